using System.Net.NetworkInformation;
using Microsoft.Extensions.Logging;
using Netcore.Egress.Daemon;
using Netcore.Egress.DataPlane;

namespace Netcore.Egress.Control;

/// <summary>A request the API refuses for a reason other than an invalid value: an unknown peer (404) or a conflict (409).</summary>
internal sealed class EgressApiException(int status, string field, string message) : Exception($"{field}: {message}")
{
    /// <summary>The HTTP status: 404 or 409.</summary>
    public int Status { get; } = status;

    /// <summary>The field or resource concerned.</summary>
    public string Field { get; } = field;
}

/// <summary>
/// The runtime configuration in force (this machine's range and the peers) and every way it
/// changes: the REST API, SIGHUP and the start. A change is validated like the configuration (plus
/// the checks that need this machine: its range inside ip_local_port_range, no peer with the
/// uplink's MAC), then written to the store in a transaction that commits only after the XDP port
/// table (<see cref="EgressDataPlane.SetOwners"/>) and the proxy took it. One change at a time.
/// </summary>
internal sealed partial class EgressController
{
    private readonly Lock _lock = new();
    private readonly EgressDataPlane _dp;
    private readonly ConfigStore? _store;
    private readonly PhysicalAddress _uplinkMac;
    private readonly ILogger _log;
    private volatile EgressConfig _current;

    public EgressController(EgressConfig initial, EgressDataPlane dp, ConfigStore? store, PhysicalAddress uplinkMac, ILogger log)
    {
        _current = initial;
        _dp = dp;
        _store = store;
        _uplinkMac = uplinkMac;
        _log = log;
    }

    /// <summary>The configuration in force.</summary>
    public EgressConfig Current => _current;

    /// <summary>Called with each configuration applied (the proxy takes the new range).</summary>
    public Action<EgressConfig>? Applied { get; set; }

    /// <summary>The store, if any.</summary>
    public ConfigStore? Store => _store;

    /// <summary>The owner slot of a peer in egress_ports.</summary>
    public uint SlotOf(EgressPeer peer) => _dp.SlotOf(peer.Mac);

    /// <summary>Writes <paramref name="cfg"/>'s range and peers to the data plane and the store (start-up; no checks beyond <see cref="Check"/>).</summary>
    public void Initialize(EgressConfig cfg, string source)
    {
        lock (_lock)
            Apply(cfg, source);
    }

    /// <summary>PUT /api/v1/ports: this machine's range.</summary>
    public EgressConfig SetPorts(PortRange ports)
    {
        lock (_lock)
        {
            var cur = _current;
            foreach (var p in cur.Peers)
                if (p.Ports.Overlaps(ports))
                    throw new EgressApiException(409, "ports", $"{ports} overlaps {p.Ports} of {EgressConfig.FormatMac(p.Mac)}: each port has one owner (change or delete that peer first)");
            Apply(cur with { Ports = ports }, "api");
            return _current;
        }
    }

    /// <summary>The peer with this MAC.</summary>
    public EgressPeer GetPeer(PhysicalAddress mac) =>
        _current.Peers.FirstOrDefault(p => p.Mac.Equals(mac)) ?? throw NotFound(mac);

    /// <summary>PUT (create or replace, <paramref name="mustBeNew"/> false) or POST (create only) a peer; returns it and whether it was created.</summary>
    public (EgressPeer Peer, bool Created) PutPeer(PhysicalAddress mac, PortRange ports, bool mustBeNew)
    {
        lock (_lock)
        {
            var cur = _current;
            bool exists = cur.Peers.Any(p => p.Mac.Equals(mac));
            if (exists && mustBeNew)
                throw new EgressApiException(409, "mac", $"{EgressConfig.FormatMac(mac)} is already a peer (PUT /api/v1/peers/{EgressConfig.FormatMac(mac)} changes its range)");
            if (ports.Overlaps(cur.Ports))
                throw new EgressApiException(409, "ports", $"{ports} overlaps this machine's {cur.Ports}: each port has one owner");
            foreach (var p in cur.Peers)
                if (!p.Mac.Equals(mac) && p.Ports.Overlaps(ports))
                    throw new EgressApiException(409, "ports", $"{ports} overlaps {p.Ports} of {EgressConfig.FormatMac(p.Mac)}: each port has one owner");
            var peer = new EgressPeer(ports, mac);
            var peers = exists ? cur.Peers.Select(p => p.Mac.Equals(mac) ? peer : p).ToList() : [.. cur.Peers, peer];
            Apply(cur with { Peers = peers }, "api");
            return (peer, !exists);
        }
    }

    /// <summary>DELETE /api/v1/peers/MAC: its ports become nobody's (the stack answers them).</summary>
    public void DeletePeer(PhysicalAddress mac)
    {
        lock (_lock)
        {
            var cur = _current;
            if (!cur.Peers.Any(p => p.Mac.Equals(mac)))
                throw NotFound(mac);
            Apply(cur with { Peers = [.. cur.Peers.Where(p => !p.Mac.Equals(mac))] }, "api");
        }
    }

    /// <summary>
    /// SIGHUP: the file and options read again; their range and peers replace those in force and in
    /// the store (API changes included). An invalid result is logged and changes nothing.
    /// </summary>
    public void Reload(Func<EgressConfig> reload)
    {
        lock (_lock)
        {
            var cur = _current;
            EgressConfig next;
            try
            {
                next = reload();
                Check(next);
            }
            catch (Exception e) when (e is EgressConfigException or IOException or UnauthorizedAccessException)
            {
                ServeCommand.Log.ReloadFailed(_log, e.Message);
                return;
            }
            if (next.Interface != cur.Interface || !Equals(next.SharedAddress, cur.SharedAddress) || !Equals(next.SharedAddress6, cur.SharedAddress6) || !next.Listen.Equals(cur.Listen) ||
                next.AddressDevice != cur.AddressDevice || next.XdpMode != cur.XdpMode || next.ArpSysctls != cur.ArpSysctls ||
                !next.BgpPeers.SequenceEqual(cur.BgpPeers) || next.BgpLocalAs != cur.BgpLocalAs || !Equals(next.BgpRouterId, cur.BgpRouterId) ||
                !Equals(next.Api, cur.Api) || next.ApiToken != cur.ApiToken || next.Db != cur.Db)
                ServeCommand.Log.ReloadNeedsRestart(_log);
            try
            {
                Apply(cur with { Ports = next.Ports, Peers = next.Peers }, "SIGHUP");
            }
            catch (Exception e) when (e is Netcore.Xdp.BpfException or InvalidOperationException or Microsoft.Data.Sqlite.SqliteException)
            {
                ServeCommand.Log.ReloadFailed(_log, e.Message);
                return;
            }
            ServeCommand.Log.Reloaded(_log, next.Ports.ToString(), next.Peers.Count);
        }
    }

    /// <summary>The checks that need this machine: the range inside ip_local_port_range, no peer with the uplink's MAC.</summary>
    public void Check(EgressConfig cfg)
    {
        cfg.Validate();
        ServeCommand.CheckLocalPortRange(cfg.Ports);
        foreach (var p in cfg.Peers)
            if (p.Mac.Equals(_uplinkMac))
                throw new EgressConfigException("peers", $"{EgressConfig.FormatMac(p.Mac)} ({p.Ports}) is this machine's own uplink MAC");
    }

    private void Apply(EgressConfig next, string source)
    {
        Check(next);
        int written = 0;
        var before = _current;
        void Take()
        {
            try
            {
                written = _dp.SetOwners(next.Ports, next.Peers);
            }
            catch (Exception e) when (e is Netcore.Xdp.BpfException or InvalidOperationException)
            {
                // bpf(2) failed part way: put back the configuration in force (best effort; the
                // entries written are tracked one by one), the store rolls back, the caller gets the error.
                try
                {
                    _dp.SetOwners(before.Ports, before.Peers);
                }
                catch (Exception e2) when (e2 is Netcore.Xdp.BpfException or InvalidOperationException)
                {
                    LogRestoreFailed(_log, e2.Message);
                }
                throw;
            }
            Applied?.Invoke(next);
        }
        if (_store is null)
            Take();
        else
            _store.Save(next.Ports, next.Peers, Take);
        _current = next;
        LogApplied(_log, source, next.Ports.ToString(), next.Peers.Count, written);
    }

    [LoggerMessage(14, LogLevel.Critical, "the port table could not be put back after a failed change; it may differ from the configuration in force: {Message}")]
    private static partial void LogRestoreFailed(ILogger logger, string message);

    private static EgressApiException NotFound(PhysicalAddress mac) =>
        new(404, "mac", $"{EgressConfig.FormatMac(mac)} is not a peer");

    [LoggerMessage(11, LogLevel.Information, "configuration from {Source}: this machine's ports {Ports}, {Peers} other machines ({Written} port entries written)")]
    private static partial void LogApplied(ILogger logger, string source, string ports, int peers, int written);
}
