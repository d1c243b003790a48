using Netcore.LoadBalancer.DataPlane;

namespace Netcore.LoadBalancer.Tests;

/// <summary>
/// An in-memory data plane that records what the control plane does, in order, and checks the
/// invariants the XDP program relies on: a ring is swapped in whole (never written in place), a
/// service's key is only added once its ring exists, and a live ring never names a cleared backend.
/// </summary>
internal sealed class FakeDataPlane : IDataPlane
{
    public Dictionary<string, (LbServiceKey Key, LbService Value)> Services { get; } = [];
    public Dictionary<uint, uint[]> Rings { get; } = [];
    public Dictionary<uint, LbBackend> Backends { get; } = [];
    public List<string> Ops { get; } = [];
    public Dictionary<uint, LbStats> Stats { get; } = [];

    public bool Adopted { get; set; }

    private static string K(in LbServiceKey key) => Convert.ToHexString(LbMaps.Bytes(key));

    public void SetConfig(in LbConfig config) => Ops.Add("config");

    private readonly LbVipTable _vips = new((_, _) => { });

    public bool HasRoomFor(in LbServiceKey key) => _vips.HasRoomFor(key);

    public void SetService(in LbServiceKey key, in LbService value)
    {
        _vips.Set(key, value);
        Assert.True(Rings.ContainsKey(value.id), $"service {value.id} added before its ring");
        Services[K(key)] = (key, value);
        Ops.Add($"service {value.id}");
    }

    public void RemoveService(in LbServiceKey key)
    {
        _vips.Remove(key);
        Services.Remove(K(key));
        Ops.Add("remove-service");
    }

    public void RemoveRing(uint serviceId)
    {
        Rings.Remove(serviceId);
        Ops.Add($"remove-ring {serviceId}");
    }

    public IReadOnlyList<LbServiceKey> ServiceKeys() => [.. Services.Values.Select(v => v.Key)];

    public void SetBackend(uint id, in LbBackend backend)
    {
        Backends[id] = backend;
        Ops.Add($"backend {id} flags {backend.flags}");
    }

    public bool WasDown(uint id, System.Net.IPAddress address, uint serviceId) =>
        Backends.TryGetValue(id, out var b) && b.MarksDown(address, serviceId);

    public void ClearBackend(uint id)
    {
        foreach (var (sid, ring) in Rings)
        {
            Assert.DoesNotContain(id, ring.Select(LbMaps.RingFirst));
            Assert.DoesNotContain(id, ring.Select(LbMaps.RingSecond)); // nor as a second hop
        }
        Backends[id] = default;
        Ops.Add($"clear {id}");
    }

    public void SwapRing(uint serviceId, ReadOnlySpan<uint> values)
    {
        uint[] copy = values.ToArray(); // a new ring every time: the old array is never touched
        foreach (uint v in copy)
        {
            uint first = LbMaps.RingFirst(v), second = LbMaps.RingSecond(v);
            Assert.True(v == LbMaps.NoBackend || (Backends.TryGetValue(first, out var b) && b.family != 0), $"ring names backend {first}, which has no slot");
            Assert.True(second == 0 || (Backends.TryGetValue(second, out var s) && s.family != 0 && (s.flags & LbMaps.BackendDown) == 0), $"ring names second hop {second}, which has no slot or is down");
        }
        Rings[serviceId] = copy;
        Ops.Add($"ring {serviceId}");
    }

    public uint[]? ReadRing(uint serviceId) => Rings.TryGetValue(serviceId, out var r) ? [.. r] : null;

    /// <summary>The backend of each slot of a service's ring (second hops masked off).</summary>
    public uint[] Firsts(uint serviceId) => [.. Rings[serviceId].Select(LbMaps.RingFirst)];

    public LbStats ServiceStats(uint serviceId) => Stats.GetValueOrDefault(serviceId);

    public LbStats BackendStats(uint backendId) => Stats.GetValueOrDefault(10_000 + backendId);

    public ulong Global(LbGlobalCounter counter) => 0;

    public void ResetStats(uint? serviceId, uint? backendId)
    {
        if (serviceId is uint s)
            Stats.Remove(s);
        if (backendId is uint b)
            Stats.Remove(10_000 + b);
    }

    /// <summary>Entries per backend id of a service's ring.</summary>
    public Dictionary<uint, int> Counts(uint serviceId) =>
        Firsts(serviceId).Where(v => v != LbMaps.NoBackend).GroupBy(v => v).ToDictionary(g => g.Key, g => g.Count());

    public void Dispose()
    {
    }
}
