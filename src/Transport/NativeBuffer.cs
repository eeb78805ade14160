using System.Runtime.InteropServices;

namespace ActorRing.Transport;

/// <summary>
/// Reusable unmanaged scratch memory. Unmanaged so the sender thread can read it by pointer without pinning,
/// and reused across operations so the hot path does not allocate.
/// </summary>
internal sealed unsafe class NativeBuffer : IDisposable
{
    private void* _ptr;
    private nuint _size;

    public byte* Ensure(long bytes)
    {
        if ((nuint)bytes > _size)
        {
            NativeMemory.AlignedFree(_ptr);
            _ptr = null;
            _size = 0;
            // Grow geometrically so a sequence of slightly larger messages does not reallocate each time.
            nuint size = Math.Max((nuint)bytes, _size * 2);
            _ptr = NativeMemory.AlignedAlloc(size, 64);
            _size = size;
        }
        return (byte*)_ptr;
    }

    public void Dispose()
    {
        NativeMemory.AlignedFree(_ptr);
        _ptr = null;
        _size = 0;
    }
}
