using System.Runtime.InteropServices;

namespace Netcore.Xdp.Tests;

public class MapTests
{
    [StructLayout(LayoutKind.Sequential)]
    private struct LpmKey
    {
        public uint PrefixLen;
        public uint Addr;
    }

    private static BpfMap Create(BpfMapType type, uint key, uint value, uint max, BpfMapFlags flags = 0, BpfMap? inner = null) =>
        BpfMap.Create(new BpfMapSpec { Type = type, KeySize = key, ValueSize = value, MaxEntries = max, Flags = flags, Name = "t_" + type, InnerMapTemplate = inner });

    [LinuxFact(Bpf = true)]
    public void HashLookupUpdateDeleteIterateAndFlags()
    {
        using var m = Create(BpfMapType.Hash, 4, 8, 128);
        var map = m.AsMap<uint, ulong>();
        for (uint i = 0; i < 100; i++)
            map.Update(i, i * 10);
        Assert.True(map.TryLookup(42, out ulong v));
        Assert.Equal(420ul, v);
        Assert.False(map.TryLookup(1000, out _));
        var e = Assert.Throws<BpfException>(() => map.Update(1, 1, MapUpdateFlags.NoExist));
        Assert.Equal("EEXIST", e.ErrorName);
        Assert.Equal("ENOENT", Assert.Throws<BpfException>(() => map.Update(5000, 1, MapUpdateFlags.Exist)).ErrorName);
        Assert.True(map.Delete(42));
        Assert.False(map.Delete(42));
        var keys = new List<uint>();
        foreach (uint k in map.Keys)
            keys.Add(k);
        Assert.Equal(99, keys.Count);
        Assert.DoesNotContain(42u, keys);
        Assert.Equal(128u, m.GetInfo().MaxEntries);
    }

    [LinuxFact(Bpf = true)]
    public void BatchOperationsWalkTheWholeMap()
    {
        using var m = Create(BpfMapType.Hash, 4, 8, 4096);
        var map = m.AsMap<uint, ulong>();
        var keys = Enumerable.Range(0, 3000).Select(i => (uint)i).ToArray();
        var values = keys.Select(k => (ulong)k + 7).ToArray();
        Assert.Equal(3000, map.UpdateBatch(keys, values));
        var cursor = new MapBatchCursor(m);
        var kb = new uint[512];
        var vb = new ulong[512];
        var seen = new Dictionary<uint, ulong>();
        while (!cursor.Done)
        {
            int n = map.LookupBatch(cursor, kb, vb);
            for (int i = 0; i < n; i++)
                seen[kb[i]] = vb[i];
        }
        Assert.Equal(3000, seen.Count);
        Assert.All(seen, kv => Assert.Equal(kv.Key + 7ul, kv.Value));
        Assert.Equal(1000, map.DeleteBatch(keys.AsSpan(0, 1000)));
        Assert.False(map.TryLookup(5, out _));
        Assert.True(map.TryLookup(2999, out _));
    }

    [LinuxFact(Bpf = true)]
    public void ArrayAndMmapableArray()
    {
        using var a = Create(BpfMapType.Array, 4, 8, 16);
        var map = a.AsMap<uint, ulong>();
        map.Update(3, 33);
        Assert.Equal(33ul, map.Lookup(3));
        Assert.Equal(0ul, map.Lookup(4)); // arrays are preallocated and zeroed
        Assert.Equal("EINVAL", Assert.Throws<BpfException>(() => map.Delete(3)).ErrorName);

        using var mm = Create(BpfMapType.Array, 4, 8, 1024, BpfMapFlags.Mmapable);
        using var mem = mm.MapArray<ulong>();
        mem.Span[17] = 0xfeed;
        Assert.Equal(0xfeedul, mm.AsMap<uint, ulong>().Lookup(17));
        mm.AsMap<uint, ulong>().Update(18, 99);
        Assert.Equal(99ul, mem.Span[18]);
    }

    [LinuxTheory(Bpf = true)]
    [InlineData(BpfMapType.PerCpuArray)]
    [InlineData(BpfMapType.PerCpuHash)]
    [InlineData(BpfMapType.LruPerCpuHash)]
    public void PerCpuValuesAsSpans(BpfMapType type)
    {
        using var m = Create(type, 4, 8, 8);
        var map = m.AsPerCpu<uint, ulong>();
        Span<ulong> values = stackalloc ulong[map.CpuCount];
        for (int i = 0; i < values.Length; i++)
            values[i] = (ulong)(i + 1) * 100;
        map.Update(2, values);
        Span<ulong> back = stackalloc ulong[map.CpuCount];
        Assert.True(map.TryLookup(2, back));
        Assert.True(values.SequenceEqual(back));
        Assert.Equal(BpfMap.PossibleCpus.Count, map.CpuCount);
        // Sum: 100 + 200 + ... over the possible CPUs; a key without a value (hash types) sums to 0.
        Assert.Equal((ulong)(map.CpuCount * (map.CpuCount + 1) / 2 * 100), map.Sum(2u));
        Assert.Equal(0ul, map.Sum(3u));
    }

    [LinuxFact(Bpf = true)]
    public void LruHashEvicts()
    {
        using var m = Create(BpfMapType.LruHash, 4, 8, 64);
        var map = m.AsMap<uint, ulong>();
        for (uint i = 0; i < 1000; i++)
            map.Update(i, i);
        int count = 0;
        foreach (uint _ in map.Keys)
            count++;
        Assert.InRange(count, 1, 64);
        Assert.True(map.TryLookup(999, out _)); // the newest entry survives
    }

    [LinuxFact(Bpf = true)]
    public void LpmTrieLongestPrefixMatch()
    {
        using var m = Create(BpfMapType.LpmTrie, 8, 4, 16, BpfMapFlags.NoPrealloc);
        var map = m.AsMap<LpmKey, uint>();
        static uint Ip(byte a, byte b, byte c, byte d) => BitConverter.ToUInt32([a, b, c, d]);
        map.Update(new LpmKey { PrefixLen = 8, Addr = Ip(10, 0, 0, 0) }, 8);
        map.Update(new LpmKey { PrefixLen = 24, Addr = Ip(10, 1, 2, 0) }, 24);
        Assert.Equal(24u, map.Lookup(new LpmKey { PrefixLen = 32, Addr = Ip(10, 1, 2, 3) }));
        Assert.Equal(8u, map.Lookup(new LpmKey { PrefixLen = 32, Addr = Ip(10, 9, 9, 9) }));
        Assert.False(map.TryLookup(new LpmKey { PrefixLen = 32, Addr = Ip(192, 0, 2, 1) }, out _));
    }

    [LinuxFact(Bpf = true)]
    public void ProgArrayHoldsPrograms()
    {
        using var pa = Create(BpfMapType.ProgArray, 4, 4, 4);
        using var prog = new BpfAssembler().Mov(BpfRegister.R0, 2).Exit().Load(BpfProgramType.Xdp);
        pa.UpdateFd(1, prog.Fd);
        // From user space a prog array lookup returns the program id (kernel/bpf/arraymap.c prog_fd_array_sys_lookup_elem).
        Assert.Equal(prog.GetInfo().Id, pa.AsMap<uint, uint>().Lookup(1));
        Assert.True(pa.AsMap<uint, uint>().Delete(1));
    }

    [LinuxFact(Bpf = true)]
    public void MapInMapHoldsMaps()
    {
        using var template = Create(BpfMapType.Array, 4, 4, 1);
        using var inner = Create(BpfMapType.Array, 4, 4, 1);
        using var aom = Create(BpfMapType.ArrayOfMaps, 4, 4, 2, inner: template);
        using var hom = Create(BpfMapType.HashOfMaps, 4, 4, 2, inner: template);
        aom.UpdateFd(0, inner.Fd);
        hom.UpdateFd(7, inner.Fd);
        uint innerId = inner.GetInfo().Id;
        Assert.Equal(innerId, aom.AsMap<uint, uint>().Lookup(0));
        Assert.Equal(innerId, hom.AsMap<uint, uint>().Lookup(7));
    }

    [LinuxFact(Bpf = true)]
    public void DevMapCpuMapXskMap()
    {
        using var dev = Create(BpfMapType.DevMap, 4, 4, 4);
        dev.AsMap<uint, uint>().Update(0, 1); // ifindex 1 (lo)
        Assert.Equal(1u, dev.AsMap<uint, uint>().Lookup(0));

        using var cpu = Create(BpfMapType.CpuMap, 4, 4, (uint)BpfMap.PossibleCpus.Count);
        cpu.AsMap<uint, uint>().Update(0, 192); // queue size (struct bpf_cpumap_val.qsize)
        Assert.Equal(192u, cpu.AsMap<uint, uint>().Lookup(0));

        using var xsk = Create(BpfMapType.XskMap, 4, 4, 4);
        Assert.Equal(BpfMapType.XskMap, xsk.GetInfo().Type);
        // Only AF_XDP sockets may be stored; anything else is refused by the kernel.
        using var udp = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Dgram, System.Net.Sockets.ProtocolType.Udp);
        Assert.ThrowsAny<BpfException>(() => xsk.UpdateFd(0, (int)udp.Handle));
    }

    [LinuxFact(Bpf = true)]
    public void RingBufferQueueAndStackFromUserSpace()
    {
        using var rb = Create(BpfMapType.RingBuf, 0, 0, 4096);
        using var reader = new RingBufferReader(rb);
        Assert.Equal(0, reader.ReadAvailable(_ => { }));
        Assert.Equal(0, reader.Poll(_ => { }, TimeSpan.FromMilliseconds(10)));

        using var q = Create(BpfMapType.Queue, 0, 4, 4);
        q.Push(BitConverter.GetBytes(1u));
        q.Push(BitConverter.GetBytes(2u));
        var buf = new byte[4];
        Assert.True(q.TryPop(buf));
        Assert.Equal(1u, BitConverter.ToUInt32(buf));
        using var s = Create(BpfMapType.Stack, 0, 4, 4);
        s.Push(BitConverter.GetBytes(1u));
        s.Push(BitConverter.GetBytes(2u));
        Assert.True(s.TryPop(buf));
        Assert.Equal(2u, BitConverter.ToUInt32(buf));
    }

    [LinuxFact(Bpf = true)]
    public void PinAndReopen()
    {
        string path = $"/sys/fs/bpf/nct_map_{Environment.ProcessId}";
        try
        {
            using (var m = Create(BpfMapType.Hash, 4, 8, 8))
            {
                m.AsMap<uint, ulong>().Update(1, 11);
                m.Pin(path);
            }
            using var again = BpfMap.FromPin(path);
            Assert.Equal(BpfMapType.Hash, again.Type);
            Assert.Equal(11ul, again.AsMap<uint, ulong>().Lookup(1));
            using var byId = BpfMap.FromId(again.GetInfo().Id);
            Assert.Equal(11ul, byId.AsMap<uint, ulong>().Lookup(1));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void PossibleCpuParsing()
    {
        Assert.Equal(1, PossibleCpuSet.Parse("0"));
        Assert.Equal(4, PossibleCpuSet.Parse("0-3\n"));
        Assert.Equal(8, PossibleCpuSet.Parse("0-3,5,7"));
    }

    [LinuxFact(Bpf = true)]
    public void WrongSizesAreRejectedBeforeTheSyscall()
    {
        using var m = Create(BpfMapType.Hash, 4, 8, 8);
        Assert.Throws<ArgumentException>(() => m.AsMap<ulong, ulong>());
        Assert.Throws<ArgumentException>(() => m.AsPerCpu<uint, ulong>());
    }

    [LinuxFact(Bpf = true)]
    public void FeatureProbes()
    {
        Assert.True(BpfFeatures.SupportsProgramType(BpfProgramType.Xdp));
        Assert.True(BpfFeatures.SupportsMapType(BpfMapType.LpmTrie));
        Assert.True(BpfFeatures.SupportsMapType(BpfMapType.RingBuf));
        Assert.True(BpfFeatures.SupportsHelper(BpfProgramType.Xdp, (int)BpfHelper.RedirectMap));
        Assert.False(BpfFeatures.SupportsHelper(BpfProgramType.SocketFilter, (int)BpfHelper.XdpAdjustHead));
        Assert.False(BpfFeatures.SupportsProgramType((BpfProgramType)999));
        var e = Assert.Throws<BpfNotSupportedException>(() => BpfFeatures.RequireHelper(BpfProgramType.SocketFilter, (int)BpfHelper.XdpAdjustHead));
        Assert.Contains("44", e.Message, StringComparison.Ordinal);
        Assert.True(BpfFeatures.SupportsTcx());
    }
}
