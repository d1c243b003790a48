using BenchmarkDotNet.Attributes;
using Netcore.Xdp;

namespace Netcore.Benchmarks.Xdp;

/// <summary>
/// Per-operation cost and allocation of typed map access on a 64K-entry hash map (u32 → u64).
/// Needs root (CAP_BPF). MemoryDiagnoser shows the bytes allocated per operation (expected: 0).
/// </summary>
[MemoryDiagnoser]
public class XdpMapBenchmarks
{
    private const int Entries = 65536;
    private BpfMap _map = null!;
    private Map<uint, ulong> _typed;
    private PerCpuMap<uint, ulong> _perCpu;
    private BpfMap _perCpuMap = null!;
    private ulong[] _cpuValues = [];
    private uint[] _keys = [];
    private ulong[] _values = [];
    private MapBatchCursor _cursor = null!;
    private uint _next;

    [GlobalSetup]
    public void Setup()
    {
        _map = BpfMap.Create(new BpfMapSpec { Type = BpfMapType.Hash, KeySize = 4, ValueSize = 8, MaxEntries = Entries, Name = "bench_hash" });
        _typed = _map.AsMap<uint, ulong>();
        for (uint i = 0; i < Entries; i++)
            _typed.Update(i, i);
        _perCpuMap = BpfMap.Create(new BpfMapSpec { Type = BpfMapType.PerCpuArray, KeySize = 4, ValueSize = 8, MaxEntries = 16, Name = "bench_pcpu" });
        _perCpu = _perCpuMap.AsPerCpu<uint, ulong>();
        _cpuValues = new ulong[_perCpu.CpuCount];
        _keys = new uint[Entries];
        _values = new ulong[Entries];
        _cursor = new MapBatchCursor(_map);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _map.Dispose();
        _perCpuMap.Dispose();
    }

    private uint NextKey() => _next = (_next + 7919) & (Entries - 1);

    /// <summary>One BPF_MAP_LOOKUP_ELEM.</summary>
    [Benchmark]
    public ulong Lookup()
    {
        _typed.TryLookup(NextKey(), out ulong v);
        return v;
    }

    /// <summary>One BPF_MAP_UPDATE_ELEM of an existing key.</summary>
    [Benchmark]
    public void Update()
    {
        uint k = NextKey();
        _typed.Update(k, k + 1, MapUpdateFlags.Exist);
    }

    /// <summary>One BPF_MAP_DELETE_ELEM followed by the re-insert that keeps the map full.</summary>
    [Benchmark]
    public void DeleteAndInsert()
    {
        uint k = NextKey();
        _typed.Delete(k);
        _typed.Update(k, k, MapUpdateFlags.NoExist);
    }

    /// <summary>Per-CPU lookup into a reused span.</summary>
    [Benchmark]
    public ulong PerCpuLookup()
    {
        _perCpu.TryLookup(3, _cpuValues);
        return _cpuValues[0];
    }

    /// <summary>The whole map with BPF_MAP_LOOKUP_BATCH (8192 per call).</summary>
    [Benchmark]
    public int BatchLookupAll()
    {
        _cursor.Reset();
        int total = 0;
        while (!_cursor.Done)
            total += _typed.LookupBatch(_cursor, _keys.AsSpan(0, 8192), _values.AsSpan(0, 8192));
        return total;
    }
}
