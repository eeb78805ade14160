// Quantizes a GGUF file with llama.cpp's own quantizer (llama_model_quantize), for checking that ActorRing runs
// llama.cpp's K-quant files as llama.cpp does: a random F32 file from random_gguf.py in, a Q4_K_M (or another
// llama_ftype) file out.
//
//   g++ -O2 -std=c++17 docs/bench/llamacpp_quantize.cpp -I$LLAMA/include -I$LLAMA/ggml/include \
//       $LLAMA/build/src/libllama.a $LLAMA/build/ggml/src/libggml.a $LLAMA/build/ggml/src/libggml-cpu.a \
//       $LLAMA/build/ggml/src/libggml-base.a -fopenmp -lpthread -o llamacpp_quantize
//   ./llamacpp_quantize IN.gguf OUT.gguf [FTYPE [f32-head]]   # FTYPE: llama_ftype's number, default 15 (Q4_K_M);
//                                                             # f32-head keeps token_embd and output in F32
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char ** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s IN.gguf OUT.gguf [FTYPE]\n", argv[0]);
        return 2;
    }
    llama_backend_init();
    llama_model_quantize_params params = llama_model_quantize_default_params();
    params.ftype = argc > 3 ? (llama_ftype) std::atoi(argv[3]) : LLAMA_FTYPE_MOSTLY_Q4_K_M;
    params.nthread = 2;
    if (argc > 4 && std::string(argv[4]) == "f32-head") {
        params.output_tensor_type = GGML_TYPE_F32;
        params.token_embedding_type = GGML_TYPE_F32;
    }
    uint32_t rc = llama_model_quantize(argv[1], argv[2], &params);
    llama_backend_free();
    return rc == 0 ? 0 : 1;
}
