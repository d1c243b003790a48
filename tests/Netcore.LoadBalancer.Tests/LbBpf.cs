using System.Buffers.Binary;
using System.Globalization;
using System.Net;
using System.Text;
using Netcore.LoadBalancer.DataPlane;
using Netcore.Xdp;

namespace Netcore.LoadBalancer.Tests;

/// <summary>
/// lb.o (or lb_bench.o) loaded through Netcore.Xdp by the daemon's own <see cref="XdpDataPlane"/>
/// into a bpffs folder of its own (the maps are pinned by name there), packets run with
/// BPF_PROG_TEST_RUN. Dispose closes the fds and removes the folder, which frees everything.
/// </summary>
internal sealed class LbBpf : IDisposable
{
    public LbBpf(bool bench = false)
    {
        Dir = "/sys/fs/bpf/nclb-" + Guid.NewGuid().ToString("N")[..12];
        DataPlane = XdpDataPlane.Open(new XdpDataPlaneOptions
        {
            ObjectPath = Path.Combine(AppContext.BaseDirectory, "bpf", bench ? "lb_bench.o" : "lb.o"),
            PinDirectory = Dir,
        });
    }

    public string Dir { get; }

    public XdpDataPlane DataPlane { get; }

    public static string Hex(ReadOnlySpan<byte> b)
    {
        var sb = new StringBuilder(b.Length * 3);
        foreach (byte x in b)
            sb.Append(CultureInfo.InvariantCulture, $"{x:x2} ");
        return sb.ToString().TrimEnd();
    }

    public void SetConfig(LbConfig c) => DataPlane.SetConfig(c);

    public void AddService(LbServiceKey key, LbService value) => DataPlane.SetService(key, value);

    public void SetBackend(uint id, IPAddress address, bool down = false) => DataPlane.SetBackend(id, LbBackend.Create(address, down));

    /// <summary>The control plane's table swap (atomic for packets, see <see cref="XdpDataPlane.SwapRing"/>).</summary>
    public void SwapRing(uint serviceId, IReadOnlyList<uint> values) => DataPlane.SwapRing(serviceId, values.ToArray());

    public void SwapRing(uint serviceId, uint backendId, int size = 13) => SwapRing(serviceId, Enumerable.Repeat(backendId, size).ToArray());

    /// <summary>
    /// The flow memory key of a frame's flow (bpf/lb.h lb_flow.key): for IPv4 its source address,
    /// source port and the service; for IPv6 its flow hash and the service.
    /// </summary>
    public static ulong FlowKey(byte[] frame, uint serviceId, uint seed)
    {
        if (BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)) == Packets.EthIPv6)
            return LbMaps.FlowKeyV6Of(LbModel.FlowHash(frame, seed), serviceId);
        int ihl = (frame[14] & 0xf) * 4;
        return LbMaps.FlowKeyV4(frame.AsSpan(26, 4), frame.AsSpan(14 + ihl, 2), serviceId);
    }

    /// <summary>Forgets a remembered flow (lb_flows).</summary>
    public void ForgetFlow(byte[] frame, uint serviceId, uint seed) => DataPlane.ForgetFlow(FlowKey(frame, serviceId, seed));

    /// <summary>The backend remembered for a flow, if any.</summary>
    public uint? RememberedBackend(byte[] frame, uint serviceId, uint seed) =>
        DataPlane.RememberedFlow(FlowKey(frame, serviceId, seed)) is { } e ? (uint)(e.backend & ~LbMaps.FlowValid) : null;

    /// <summary>Runs one frame through the program; returns the XDP action and the frame it left with.</summary>
    public (int Action, byte[] Output) Run(byte[] frame, int repeat = 1)
    {
        byte[] output = new byte[frame.Length + 512];
        var r = DataPlane.Program.TestRun(frame, output, repeat);
        return ((int)r.ReturnValue, output[..r.DataOutLength]);
    }

    public LbStats ServiceStats(uint id) => DataPlane.ServiceStats(id);

    public LbStats BackendStats(uint id) => DataPlane.BackendStats(id);

    public ulong Global(LbGlobalCounter c) => DataPlane.Global(c);

    public void Dispose()
    {
        DataPlane.Dispose();
        if (Directory.Exists(Dir))
        {
            foreach (string f in Directory.EnumerateFiles(Dir))
                File.Delete(f);
            Directory.Delete(Dir);
        }
    }
}

/// <summary>Loads a tiny clang-built XDP_PASS program (veth peers need an XDP program for XDP_TX).</summary>
internal static class PassProgram
{
    public static BpfObject Load()
    {
        string dir = Directory.CreateTempSubdirectory("nclb-pass-").FullName;
        try
        {
            string src = Path.Combine(dir, "pass.c");
            File.WriteAllText(src, """
                #include <linux/bpf.h>
                #include <bpf/bpf_helpers.h>
                SEC("xdp") int xdp_pass(struct xdp_md *ctx) { return XDP_PASS; }
                char _license[] SEC("license") = "Dual MIT/GPL";
                """);
            Shell.ShOk($"clang-14 -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c {src} -o {src}.o");
            return BpfObject.Load(src + ".o");
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
