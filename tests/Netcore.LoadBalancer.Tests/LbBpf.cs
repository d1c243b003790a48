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
    /// <param name="bench">Load lb_bench.o (the frame is restored after each run, so a repeat count runs the same path).</param>
    /// <param name="newFlows">With <paramref name="bench"/>: lb_bench_new.o, where every packet is a flow the memory does not know.</param>
    public LbBpf(bool bench = false, bool newFlows = false)
    {
        Dir = "/sys/fs/bpf/nclb-" + Guid.NewGuid().ToString("N")[..12];
        DataPlane = XdpDataPlane.Open(new XdpDataPlaneOptions
        {
            ObjectPath = Path.Combine(AppContext.BaseDirectory, "bpf", !bench ? "lb.o" : newFlows ? "lb_bench_new.o" : "lb_bench.o"),
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

    public void SetBackend(uint id, IPAddress address, uint serviceId, bool down = false) => DataPlane.SetBackend(id, LbBackend.Create(address, serviceId, down));

    /// <summary>The control plane's table swap (atomic for packets, see <see cref="XdpDataPlane.SwapRing"/>).</summary>
    public void SwapRing(uint serviceId, IReadOnlyList<uint> values) => DataPlane.SwapRing(serviceId, values.ToArray());

    public void SwapRing(uint serviceId, uint backendId, int size = 13) => SwapRing(serviceId, Enumerable.Repeat(backendId, size).ToArray());

    private static bool IsV6(byte[] frame) => BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)) == Packets.EthIPv6;

    /// <summary>The lb_flows6 key of an IPv6 frame's flow (bpf/lb.h lb_flow.key): its flow hash and the service.</summary>
    /// <summary>Forgets a remembered flow by its 5-tuple: an IPv4 one (lb_flows) or an IPv6 one (lb_flows6).</summary>
    public void ForgetFlow(byte[] frame)
    {
        if (IsV6(frame))
            DataPlane.ForgetFlow6(LbMaps.FlowKey6(frame.AsSpan(14)));
        else
        {
            var (addrs, key) = LbMaps.FlowKey4(frame.AsSpan(14));
            DataPlane.ForgetFlow4(addrs, key);
        }
    }

    /// <summary>The backend remembered for a flow, if any.</summary>
    public uint? RememberedBackend(byte[] frame)
    {
        if (IsV6(frame))
            return DataPlane.RememberedFlow6(LbMaps.FlowKey6(frame.AsSpan(14)))?.Backend;
        var (addrs, key) = LbMaps.FlowKey4(frame.AsSpan(14));
        return DataPlane.RememberedFlow4(addrs, key)?.Backend;
    }

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
