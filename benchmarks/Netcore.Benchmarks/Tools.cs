using System.Reflection;

namespace Netcore.Benchmarks;

/// <summary>
/// Marks a static method <c>int Name(string[] args)</c> as a subcommand of the benchmark program
/// (long fuzz runs, workloads driven by benchmarks/compare scripts).
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class ToolAttribute(string name, string description) : Attribute
{
    /// <summary>Subcommand name, e.g. "netlink-fuzz".</summary>
    public string Name { get; } = name;

    /// <summary>One line of help.</summary>
    public string Description { get; } = description;
}

/// <summary>Finds and runs <see cref="ToolAttribute"/> subcommands: <c>dotnet run -c Release -- NAME args</c>.</summary>
public static class Tools
{
    private static Dictionary<string, (ToolAttribute Attr, MethodInfo Method)> Discover() =>
        typeof(Tools).Assembly.GetTypes()
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Static))
            .Select(m => (Attr: m.GetCustomAttribute<ToolAttribute>(), Method: m))
            .Where(x => x.Attr is not null)
            .ToDictionary(x => x.Attr!.Name, x => (x.Attr!, x.Method), StringComparer.Ordinal);

    /// <summary>Runs <paramref name="args"/>[0] when it names a subcommand ("list" prints them).</summary>
    public static bool TryRun(string[] args, out int exitCode)
    {
        exitCode = 0;
        var tools = Discover();
        if (args[0] == "list")
        {
            foreach (var (name, (attr, _)) in tools.OrderBy(t => t.Key, StringComparer.Ordinal))
                Console.WriteLine($"{name,-28} {attr.Description}");
            return true;
        }
        if (!tools.TryGetValue(args[0], out var tool))
            return false;
        exitCode = (int)tool.Method.Invoke(null, [args[1..]])!;
        return true;
    }
}
