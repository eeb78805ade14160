using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;

namespace ActorRing.Host.Cli;

/// <summary>A verb whose --help ends with a paragraph of notes (what its options cannot say alone: environment
/// variables, files, how ranks find each other). Its description stays one line, for the list of verbs.</summary>
internal sealed class VerbCommand(string name, string description, string notes) : Command(name, description)
{
    public string Notes { get; } = notes;

    /// <summary>The library's help, then the notes of the verb asked about.</summary>
    internal sealed class HelpWithNotes(HelpAction help) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult result)
        {
            int code = help.Invoke(result);
            if (result.CommandResult.Command is VerbCommand verb)
            {
                var output = result.InvocationConfiguration.Output;
                output.WriteLine("Notes:");
                foreach (var line in verb.Notes.Split('\n')) output.WriteLine("  " + line.TrimEnd());
                output.WriteLine();
            }
            return code;
        }
    }
}
