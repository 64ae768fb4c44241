namespace QmTunnel.Fuzz.Targets;

/// <summary>Every fuzz target, by name. A new parser is fuzzed by adding its <see cref="FuzzTarget"/> here.</summary>
public static class FuzzTargets
{
    public static IReadOnlyList<string> Names { get; } = ["frame", "control", "control-write", "management", "management-answer", "handshake", "compressed-data"];

    /// <summary>A new instance of the target <paramref name="name"/> (dispose it when it is IDisposable).</summary>
    public static FuzzTarget Create(string name) => name switch
    {
        "frame" => new FrameTarget(),
        "control" => new ControlReadTarget(),
        "control-write" => new ControlWriteTarget(),
        "management" => new ManagementRequestTarget(),
        "management-answer" => new ManagementAnswerTarget(),
        "handshake" => new HandshakeTarget(),
        "compressed-data" => new CompressedDataTarget(),
        _ => throw new ArgumentException($"no fuzz target '{name}'; the targets are {string.Join(", ", Names)}", nameof(name)),
    };

    /// <summary>The regression inputs of a target: corpus/&lt;target&gt;/*.bin under <paramref name="corpusRoot"/>, by name.</summary>
    public static IReadOnlyList<(string Name, byte[] Input)> LoadCorpus(string corpusRoot, string target)
    {
        var folder = Path.Combine(corpusRoot, target);
        return Directory.Exists(folder)
            ? Directory.GetFiles(folder, "*.bin").Order(StringComparer.Ordinal).Select(f => (Path.GetFileName(f), File.ReadAllBytes(f))).ToList()
            : [];
    }

    /// <summary>The corpus folder shipped next to the harness (copied to the output by the project).</summary>
    public static string DefaultCorpusRoot => Path.Combine(AppContext.BaseDirectory, "corpus");
}
