using System.Collections.Concurrent;

namespace Netcore.Xdp.Tests;

/// <summary>
/// Compiles the test project's BPF C sources (bpf/*.c) with clang-14 once per test run:
/// <c>clang-14 -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu</c>.
/// </summary>
internal static class BpfSources
{
    public const string Clang = "clang-14";
    private static readonly ConcurrentDictionary<string, Lazy<string>> Built = new();
    private static readonly string OutDir = Directory.CreateTempSubdirectory("nc-xdp-bpf-").FullName;

    public static string SourceDir => Path.Combine(AppContext.BaseDirectory, "bpf");

    /// <summary>Path of the compiled object for bpf/NAME.c.</summary>
    public static string Object(string name) => Built.GetOrAdd(name, n => new Lazy<string>(() =>
    {
        string src = Path.Combine(SourceDir, n + ".c");
        string obj = Path.Combine(OutDir, n + ".o");
        Shell.Run(Clang, ["-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu", "-c", src, "-o", obj])
            .EnsureSuccess($"clang-14 {n}.c");
        return obj;
    })).Value;
}

/// <summary>Test packets.</summary>
internal static class Packets
{
    /// <summary>An Ethernet + IPv4 + ICMP echo frame from <paramref name="src"/>.</summary>
    public static byte[] Icmp(byte[]? src = null, byte protocol = 1)
    {
        var p = new byte[64];
        p[12] = 0x08; // ethertype IPv4
        p[13] = 0x00;
        p[14] = 0x45;
        p[16] = 0;
        p[17] = 50;
        p[22] = 64;
        p[23] = protocol;
        (src ?? [10, 0, 0, 1]).CopyTo(p, 26);
        new byte[] { 10, 0, 0, 2 }.CopyTo(p, 30);
        p[34] = 8;
        return p;
    }
}
