namespace Netcore.LoadBalancer.DataPlane;

/// <summary>
/// What the control plane does to the XDP program's maps. <see cref="XdpDataPlane"/> is the real
/// one (Netcore.Xdp); tests of the control plane use an in-memory one.
/// </summary>
internal interface IDataPlane : IDisposable
{
    /// <summary>True when the maps and the XDP link were found pinned and adopted.</summary>
    bool Adopted { get; }

    /// <summary>Writes lb_config.</summary>
    void SetConfig(in LbConfig config);

    /// <summary>True when <see cref="SetService"/> can place this key (it is there, or its lb_vips bucket has a free slot).</summary>
    bool HasRoomFor(in LbServiceKey key);

    /// <summary>Creates or replaces a service in lb_vips; atomic for packets (see <see cref="LbVipTable"/>).</summary>
    void SetService(in LbServiceKey key, in LbService value);

    /// <summary>Removes a service from lb_vips (packets to it go to the stack again).</summary>
    void RemoveService(in LbServiceKey key);

    /// <summary>Removes a service id's ring from lb_maglev.</summary>
    void RemoveRing(uint serviceId);

    /// <summary>The keys in lb_vips now (after an adoption they may include stale ones).</summary>
    IReadOnlyList<LbServiceKey> ServiceKeys();

    /// <summary>Writes lb_backends[id] (with the configuration's and its service's settings copied in).</summary>
    void SetBackend(uint id, in LbBackend backend);

    /// <summary>
    /// True when lb_backends[id], as found (pinned maps a restarted daemon reused), is in use for
    /// <paramref name="address"/> in service <paramref name="serviceId"/> and marked down: the
    /// health a restarted daemon starts that backend from, so its first ring is the one the
    /// previous process left.
    /// </summary>
    bool WasDown(uint id, System.Net.IPAddress address, uint serviceId);

    /// <summary>Clears lb_backends[id] (family 0: flows remembered for it are re-hashed, the ring must not name it); what it counted stays in its service's counters.</summary>
    void ClearBackend(uint id);

    /// <summary>
    /// Replaces a service's Maglev ring atomically: a new inner map is created and filled
    /// completely, then the service's lb_maglev slot is pointed at it with one update.
    /// </summary>
    void SwapRing(uint serviceId, ReadOnlySpan<uint> values);

    /// <summary>
    /// The ring a service has now (its values, first | second &lt;&lt; 16), or null when it has none:
    /// a restarted daemon keeps the second hops of the ring it adopts.
    /// </summary>
    uint[]? ReadRing(uint serviceId);

    /// <summary>A service's counters summed over CPUs: its own (packets that got no backend) plus its backends', present and removed.</summary>
    LbStats ServiceStats(uint serviceId);

    /// <summary>Per-CPU backend counters summed over CPUs.</summary>
    LbStats BackendStats(uint backendId);

    /// <summary>An lb_global counter summed over CPUs.</summary>
    ulong Global(LbGlobalCounter counter);

    /// <summary>Zeroes a backend's or a service's counters (a freed id reused later starts from 0).</summary>
    void ResetStats(uint? serviceId, uint? backendId);
}
