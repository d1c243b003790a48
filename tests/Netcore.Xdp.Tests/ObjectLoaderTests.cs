using System.Runtime.InteropServices;

namespace Netcore.Xdp.Tests;

public class ObjectLoaderTests
{
    private const uint XdpAborted = 0, XdpDrop = 1, XdpPass = 2;

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void BtfMapsGlobalDataSubprogramsAndSeveralPrograms()
    {
        using var obj = BpfObject.Load(BpfSources.Object("xdp_count"));
        Assert.Equal("GPL", obj.License);
        Assert.Equal(["xdp_count", "xdp_magic", "xdp_pass"], obj.Programs.Keys.Order());
        Assert.Contains("counters", obj.Maps.Keys);
        Assert.Contains(".bss", obj.Maps.Keys);
        Assert.Contains(".data", obj.Maps.Keys);
        Assert.Contains(".rodata", obj.Maps.Keys);
        Assert.NotEqual(0u, obj.BtfId);

        // .rodata and .data hold their initial values: xdp_magic checks magic == 42 && version_data == 7.
        var frame = Packets.Icmp();
        Assert.Equal(XdpPass, obj.Program("xdp_magic").TestRun(frame, default).ReturnValue);

        var counters = obj.Map("counters").AsPerCpu<uint, ulong>();
        var xdp = obj.Program("xdp_count");
        var r = xdp.TestRun(frame, new byte[128], repeat: 5, new XdpTestContext());
        Assert.Equal(XdpPass, r.ReturnValue);
        Assert.Equal(frame.Length, r.DataOutLength);
        Span<ulong> perCpu = stackalloc ulong[counters.CpuCount];
        Assert.True(counters.TryLookup(0, perCpu));
        ulong total = 0;
        foreach (ulong v in perCpu) total += v;
        Assert.Equal(5ul, total);

        // Global in .bss written from user space changes the program's verdict.
        obj.Global("drop_icmp").Write(1u);
        Assert.Equal(XdpDrop, xdp.TestRun(frame, default).ReturnValue);
        Assert.Equal(6ul * (ulong)frame.Length, obj.Global("seen_bytes").Read<ulong>());
        // The hash map learned the source address.
        var bySource = obj.Map("by_source").AsMap<uint, ulong>();
        Assert.True(bySource.TryLookup(BitConverter.ToUInt32([10, 0, 0, 1]), out ulong seen));
        Assert.Equal(6ul, seen);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void LegacyMapsSection()
    {
        using var obj = BpfObject.Load(BpfSources.Object("legacy"));
        var map = obj.Map("legacy_hash").AsMap<uint, ulong>();
        map.Update(1, 5);
        var r = obj.Program("sock_count").TestRun(Packets.Icmp(), default);
        Assert.Equal(0u, r.ReturnValue);
        Assert.Equal(5ul + 50, map.Lookup(1)); // skb->len: the 64-byte frame after the Ethernet header is pulled
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14", "gcc"])]
    public void CoreFieldRelocationsResolveAgainstKernelBtf()
    {
        using var obj = BpfObject.Load(BpfSources.Object("core"));
        var prog = obj.Program("core_offsets");
        Assert.Equal(1u /* XDP_DROP: protocol 1 read at the relocated offset 9 */, prog.TestRun(Packets.Icmp(), default).ReturnValue);
        Assert.Equal(2u, prog.TestRun(Packets.Icmp(protocol: 6), default).ReturnValue);
        var c = CHeaderProbe.Evaluate(["linux/ip.h"], ["offsetof(struct iphdr, daddr)", "offsetof(struct iphdr, saddr)", "offsetof(struct iphdr, protocol)"]);
        Assert.Equal((ulong)c["offsetof(struct iphdr, daddr)"], obj.Global("out_daddr").Read<ulong>());
        Assert.Equal((ulong)c["offsetof(struct iphdr, saddr)"], obj.Global("out_saddr").Read<ulong>());
        Assert.Equal((ulong)c["offsetof(struct iphdr, protocol)"], obj.Global("out_proto").Read<ulong>());
        Assert.Equal(1ul, obj.Global("out_proto_size").Read<ulong>());
        Assert.Equal(1ul, obj.Global("out_skb_len").Read<ulong>());
        Assert.Equal(0ul, obj.Global("out_missing").Read<ulong>());
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void VerifierFailureCarriesLogAndSourceLine()
    {
        var e = Assert.Throws<BpfVerifierException>(() => BpfObject.Load(BpfSources.Object("verifier_fail")));
        Assert.Equal("bad_access", e.ProgramName);
        Assert.Contains("invalid access to packet", e.Log, StringComparison.Ordinal);
        Assert.NotNull(e.SourceLine);
        Assert.Contains("verifier_fail.c:9", e.SourceLine, StringComparison.Ordinal);
        Assert.Contains("data[20]", e.SourceLine, StringComparison.Ordinal);
        Assert.Equal("EACCES", e.ErrorName);
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public void RingBufferMapInMapAndLpmFromBtf()
    {
        using var obj = BpfObject.Load(BpfSources.Object("ringbuf"));
        Assert.Equal(BpfMapType.ArrayOfMaps, obj.Map("outer").Type);
        Assert.Equal(BpfMapType.LpmTrie, obj.Map("routes").Type);
        using var inner = BpfMap.Create(new BpfMapSpec { Type = BpfMapType.Array, KeySize = 4, ValueSize = 4, MaxEntries = 1, Name = "inner" });
        obj.Map("outer").UpdateFd(0, inner.Fd);
        using var reader = new RingBufferReader(obj.Map("events"));
        var prog = obj.Program("emit");
        for (int i = 0; i < 3; i++)
            Assert.Equal(2u, prog.TestRun(new byte[60 + i], default).ReturnValue);
        var seen = new List<(uint Len, uint Seq)>();
        int n = reader.Poll(rec => seen.Add((MemoryMarshal.Read<uint>(rec), MemoryMarshal.Read<uint>(rec[4..]))), TimeSpan.FromSeconds(1));
        Assert.Equal(3, n);
        Assert.Equal([(60u, 1u), (61u, 2u), (62u, 3u)], seen);
        Assert.Equal(3u, inner.AsMap<uint, uint>().Lookup(0));
    }

    [LinuxFact(Bpf = true, Tools = ["clang-14"])]
    public async Task RingBufferRunAsyncDeliversUntilCancelled()
    {
        using var obj = BpfObject.Load(BpfSources.Object("ringbuf"));
        using var inner = BpfMap.Create(new BpfMapSpec { Type = BpfMapType.Array, KeySize = 4, ValueSize = 4, MaxEntries = 1, Name = "inner" });
        obj.Map("outer").UpdateFd(0, inner.Fd);
        using var reader = new RingBufferReader(obj.Map("events"));
        int seen = 0;
        using var cts = new CancellationTokenSource();
        var run = reader.RunAsync(_ => { if (Interlocked.Increment(ref seen) == 5) cts.Cancel(); }, cts.Token);
        for (int i = 0; i < 5; i++)
            obj.Program("emit").TestRun(new byte[64], default);
        await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(30)));
        Assert.True(run.IsCompleted);
        Assert.Equal(5, Volatile.Read(ref seen));
    }
}
