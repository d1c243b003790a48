using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Netcore.LoadBalancer.DataPlane;

namespace Netcore.LoadBalancer.Tests;

/// <summary>
/// lb.o loaded through bpftool into its own bpffs folder (the managed loader, Netcore.Xdp, is being
/// written concurrently): maps pinned by name, rings created with "bpftool map create", packets run
/// with BPF_PROG_TEST_RUN ("bpftool prog run"). Dispose unpins everything, which frees the program.
/// </summary>
internal sealed partial class LbBpf : IDisposable
{
    private readonly string _tmp;
    private int _rings;

    public LbBpf(bool bench = false)
    {
        Dir = "/sys/fs/bpf/nclb-" + Guid.NewGuid().ToString("N")[..12];
        _tmp = Directory.CreateTempSubdirectory("nclb-").FullName;
        Directory.CreateDirectory(Dir);
        try
        {
            string obj = Path.Combine(AppContext.BaseDirectory, "bpf", bench ? "lb_bench.o" : "lb.o");
            Bpftool($"prog load {obj} {Dir}/prog type xdp pinmaps {Dir}");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string Dir { get; }

    public static string Hex(ReadOnlySpan<byte> b)
    {
        var sb = new StringBuilder(b.Length * 3);
        foreach (byte x in b)
            sb.Append(CultureInfo.InvariantCulture, $"{x:x2} ");
        return sb.ToString().TrimEnd();
    }

    private static byte[] U32(uint v) => BitConverter.GetBytes(v);

    public static string Bpftool(string args) => Shell.ShOk("bpftool " + args, TimeSpan.FromSeconds(60));

    public void Update(string map, byte[] key, byte[] value) =>
        Bpftool($"map update pinned {Dir}/{map} key hex {Hex(key)} value hex {Hex(value)}");

    public void SetConfig(LbConfig c) => Update(LbMaps.Config, U32(0), LbMaps.Bytes(c));

    public void AddService(LbServiceKey key, LbService value) => Update(LbMaps.Services, LbMaps.Bytes(key), LbMaps.Bytes(value));

    public void SetBackend(uint id, IPAddress address) => Update(LbMaps.Backends, U32(id), LbMaps.Bytes(LbBackend.Create(address)));

    /// <summary>
    /// The control plane's table swap: create a new ring, fill it completely, then point the
    /// service's lb_maglev slot at it with one update (atomic for packets).
    /// </summary>
    public void SwapRing(uint serviceId, IReadOnlyList<uint> values)
    {
        string ring = $"{Dir}/ring{serviceId}-{_rings++}";
        Bpftool($"map create {ring} type array key 4 value 4 entries {values.Count} name lb_ring flags {LbMaps.InnerMapFlag}");
        string batch = Path.Combine(_tmp, "batch");
        using (var w = new StreamWriter(batch))
        {
            for (int i = 0; i < values.Count; i++)
                w.WriteLine($"map update pinned {ring} key hex {Hex(U32((uint)i))} value hex {Hex(U32(values[i]))}");
        }
        Bpftool($"batch file {batch}");
        Bpftool($"map update pinned {Dir}/{LbMaps.Maglev} key hex {Hex(U32(serviceId))} value pinned {ring}");
    }

    public void SwapRing(uint serviceId, uint backendId, int size = 13) => SwapRing(serviceId, Enumerable.Repeat(backendId, size).ToArray());

    /// <summary>Runs one frame through the program; returns the XDP action and the frame it left with.</summary>
    public (int Action, byte[] Output) Run(byte[] frame, int repeat = 1)
    {
        string input = Path.Combine(_tmp, "in"), output = Path.Combine(_tmp, "out");
        File.WriteAllBytes(input, frame);
        File.Delete(output);
        string r = Bpftool($"prog run pinned {Dir}/prog data_in {input} data_out {output} repeat {repeat}");
        var m = ReturnValue().Match(r);
        Assert.True(m.Success, "unexpected bpftool output: " + r);
        return (int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), File.Exists(output) ? File.ReadAllBytes(output) : []);
    }

    /// <summary>Reads a per-CPU value and sums it over the CPUs, field by field (64-bit little-endian).</summary>
    private ulong[] PerCpuSum(string map, uint index, int fields)
    {
        using var doc = JsonDocument.Parse(Bpftool($"-j map lookup pinned {Dir}/{map} key hex {Hex(U32(index))}"));
        var sum = new ulong[fields];
        foreach (var cpu in doc.RootElement.GetProperty("values").EnumerateArray())
        {
            byte[] bytes = [.. cpu.GetProperty("value").EnumerateArray().Select(v => Convert.ToByte(v.GetString(), 16))];
            for (int f = 0; f < fields; f++)
                sum[f] += BitConverter.ToUInt64(bytes, 8 * f);
        }
        return sum;
    }

    public LbStats ServiceStats(uint id) => ToStats(PerCpuSum(LbMaps.ServiceStats, id, 4));

    public LbStats BackendStats(uint id) => ToStats(PerCpuSum(LbMaps.BackendStats, id, 4));

    public ulong Global(LbGlobalCounter c) => PerCpuSum(LbMaps.Global, (uint)c, 1)[0];

    private static LbStats ToStats(ulong[] s) => new() { packets = s[0], bytes = s[1], drops = s[2], encap_errors = s[3] };

    public void Dispose()
    {
        if (Directory.Exists(Dir))
            Shell.Sh($"rm -rf {Dir}");
        Directory.Delete(_tmp, recursive: true);
    }

    [GeneratedRegex(@"Return value: (\d+)")]
    private static partial Regex ReturnValue();
}
