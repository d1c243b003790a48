using System.Diagnostics.Metrics;
using System.Net;
using Microsoft.Extensions.Logging;
using Netcore.LoadBalancer.DataPlane;
using Netcore.LoadBalancer.Health;
using Netcore.LoadBalancer.Maglev;

namespace Netcore.LoadBalancer.Control;

/// <summary>A backend as the API shows it.</summary>
internal sealed record BackendView(string Address, uint Id, int Weight, bool Drained, string Health, int EffectiveWeight, int TableEntries);

/// <summary>A health check as the API shows it.</summary>
internal sealed record HealthCheckView(string Type, int Port, string Path, int IntervalMs, int TimeoutMs, int Rise, int Fall);

/// <summary>A service as the API shows it.</summary>
internal sealed record ServiceView(string Name, string Vip, int Port, string Protocol, string Encap, int GuePort, HealthCheckView? HealthCheck,
    uint Id, int TableSize, long TableGeneration, bool Panic, IReadOnlyList<BackendView> Backends);

/// <summary>
/// The control plane: services and backends (persisted in <see cref="ConfigStore"/>), their health,
/// and the data plane they are written to. Every change that affects who gets new flows rebuilds
/// the service's weighted Maglev table and swaps it in atomically (<see cref="IDataPlane.SwapRing"/>).
/// Effective weight = 0 when the backend is drained or down, otherwise its weight; when every
/// undrained backend is down the service is in panic mode and health is ignored.
/// </summary>
internal sealed partial class LbController : IDisposable
{
    /// <summary>Meter of the daemon's own instruments.</summary>
    public const string MeterName = "Netcore.LoadBalancer";

    private static readonly Meter Meter = new(MeterName);
    private static readonly Counter<long> RebuildCounter = Meter.CreateCounter<long>("lb.table.rebuilds", description: "Maglev tables rebuilt and swapped in");
    private static readonly Counter<long> HealthTransitions = Meter.CreateCounter<long>("lb.health.transitions", description: "Backend health state changes");

    private const string NextBackendIdKey = "next_backend_id";

    private readonly IDataPlane _dp;
    private readonly ConfigStore _store;
    private readonly ILogger _log;
    private readonly bool _runHealthChecks;
    private readonly MaglevTableBuilder _builder;
    private readonly Lock _lock = new();
    private readonly SortedDictionary<string, Svc> _services = new(StringComparer.Ordinal);
    private long _generation;

    private sealed class Svc(ServiceSpec spec, uint id)
    {
        public ServiceSpec Spec { get; set; } = spec;
        public uint Id { get; } = id;
        public long Generation { get; set; }
        public bool Panic { get; set; }
        public SortedDictionary<string, Be> Backends { get; } = new(StringComparer.Ordinal);

        /// <summary>The ring last swapped in (first | second &lt;&lt; 16), the base of the next one's second hops.</summary>
        public uint[]? Ring { get; set; }
    }

    private sealed class Be(IPAddress address, uint id, int weight, bool drained)
    {
        public IPAddress Address { get; } = address;
        public string Name { get; } = address.ToString();
        public uint Id { get; } = id;
        public int Weight { get; set; } = weight;
        public bool Drained { get; set; } = drained;
        public BackendHealth Health { get; set; } = BackendHealth.Unchecked;
        public int Entries { get; set; }
        public HealthCheckLoop? Check { get; set; }
        public int Effective => Drained || Health == BackendHealth.Down ? 0 : Weight;
    }

    public LbController(IDataPlane dataPlane, ConfigStore store, ILogger logger, int tableSize = MaglevTableBuilder.DefaultSize, bool runHealthChecks = true)
    {
        _dp = dataPlane;
        _store = store;
        _log = logger;
        _runHealthChecks = runHealthChecks;
        _builder = new MaglevTableBuilder(tableSize);
    }

    /// <summary>Raised (outside the lock) when the set of VIPs changed.</summary>
    public event Action? VipsChanged;

    /// <summary>Entries of every table.</summary>
    public int TableSize => _builder.Size;

    /// <summary>Table swaps since start.</summary>
    public long Generation => Interlocked.Read(ref _generation);

    /// <summary>The distinct VIPs of the configured services.</summary>
    public IReadOnlyList<IPAddress> Vips()
    {
        lock (_lock)
            return [.. _services.Values.Select(s => s.Spec.Vip).Distinct()];
    }

    /// <summary>Loads the stored configuration and writes it to the data plane; removes services the
    /// adopted maps hold that the store does not know.</summary>
    public void Restore()
    {
        lock (_lock)
        {
            var backends = _store.LoadBackends().ToLookup(b => b.Service, StringComparer.Ordinal);
            var storedServices = _store.LoadServices();
            // Stale services first: they may hold lb_vips slots the stored ones need.
            var known = storedServices.Select(s => Convert.ToHexString(LbMaps.Bytes(s.Spec.Key))).ToHashSet();
            foreach (var key in _dp.ServiceKeys())
                if (!known.Contains(Convert.ToHexString(LbMaps.Bytes(key))))
                    _dp.RemoveService(key);
            foreach (var stored in storedServices)
            {
                // The ring the data plane holds (adopted maps) keeps its second hops across the restart.
                var svc = new Svc(stored.Spec, stored.Id) { Ring = _dp.ReadRing(stored.Id) };
                foreach (var b in backends[stored.Spec.Name])
                    svc.Backends[b.Address.ToString()] = new Be(b.Address, b.Id, b.Weight, b.Drained);
                _services[svc.Spec.Name] = svc;
                foreach (var be in svc.Backends.Values)
                {
                    // Health starts where the previous process left it (the down flag in the
                    // reused lb_backends), so the first ring is the one the data plane already
                    // has, instead of every backend up until its checks fail again.
                    be.Health = svc.Spec.HealthCheck is null ? BackendHealth.Unchecked
                        : _dp.WasDown(be.Id, be.Address, svc.Id) ? BackendHealth.Down : BackendHealth.Up;
                    _dp.SetBackend(be.Id, LbBackend.Create(be.Address, svc.Id, be.Health == BackendHealth.Down));
                }
                Rebuild(svc);
                _dp.SetService(svc.Spec.Key, LbService.Create(svc.Id, TableSize, svc.Spec.Encap, svc.Spec.GuePort));
                StartChecks(svc);
            }
            LogRestored(_log, _services.Count, _services.Values.Sum(s => s.Backends.Count));
        }
        VipsChanged?.Invoke();
    }

    /// <summary>All services.</summary>
    public IReadOnlyList<ServiceView> Services()
    {
        lock (_lock)
            return [.. _services.Values.Select(View)];
    }

    /// <summary>One service; 404 when unknown.</summary>
    public ServiceView GetService(string name)
    {
        lock (_lock)
            return View(Find(name));
    }

    /// <summary>Creates or replaces a service; returns its view and whether it was created.</summary>
    /// <exception cref="ConfigException">409 when another service has the same (VIP, port, protocol) or no service id is free.</exception>
    public (ServiceView View, bool Created) PutService(ServiceSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        lock (_lock)
        {
            var clash = _services.Values.FirstOrDefault(s => s.Spec.Name != spec.Name && s.Spec.Vip.Equals(spec.Vip) && s.Spec.Port == spec.Port && s.Spec.Protocol == spec.Protocol);
            if (clash is not null)
                throw new ConfigException(ConfigErrorKind.Conflict, "vip", $"vip: {spec.Vip}:{spec.Port}/{spec.ProtocolName} is already service '{clash.Spec.Name}'");
            bool created = !_services.TryGetValue(spec.Name, out var svc);
            if ((svc is null || !svc.Spec.Key.Equals(spec.Key)) && !_dp.HasRoomFor(spec.Key))
                throw new ConfigException(ConfigErrorKind.Conflict, "vip",
                    $"vip: {spec.Vip}:{spec.Port}/{spec.ProtocolName} hashes to an lb_vips bucket whose {LbMaps.VipWays} slots are used by other services");
            if (svc is null)
            {
                uint id = 0;
                var used = _services.Values.Select(s => s.Id).ToHashSet();
                while (id < LbMaps.MaxServices && used.Contains(id))
                    id++;
                if (id >= LbMaps.MaxServices)
                    throw new ConfigException(ConfigErrorKind.Conflict, "name", $"name: all {LbMaps.MaxServices} service slots (LB_MAX_SERVICES) are in use");
                svc = new Svc(spec, id);
                _store.SaveService(spec, id);
                _services[spec.Name] = svc;
                _dp.ResetStats(id, null);
                Rebuild(svc); // the ring exists before the service does, so no packet matches without one
                _dp.SetService(spec.Key, LbService.Create(id, TableSize, spec.Encap, spec.GuePort));
                StartChecks(svc);
            }
            else
            {
                var old = svc.Spec;
                _store.SaveService(spec, svc.Id);
                svc.Spec = spec;
                _dp.SetService(spec.Key, LbService.Create(svc.Id, TableSize, spec.Encap, spec.GuePort));
                if (!old.Key.Equals(spec.Key))
                    _dp.RemoveService(old.Key);
                if (old.HealthCheck != spec.HealthCheck)
                {
                    StopChecks(svc);
                    foreach (var be in svc.Backends.Values)
                        be.Health = spec.HealthCheck is null ? BackendHealth.Unchecked : BackendHealth.Up;
                    WriteBackends(svc);
                    Rebuild(svc);
                    StartChecks(svc);
                }
            }
            LogServicePut(_log, spec.Name, spec.Vip, spec.Port, spec.ProtocolName, spec.EncapName, created);
            var view = View(svc);
            _ = Task.Run(() => VipsChanged?.Invoke());
            return (view, created);
        }
    }

    /// <summary>Deletes a service and its backends.</summary>
    public void DeleteService(string name)
    {
        lock (_lock)
        {
            var svc = Find(name);
            _dp.RemoveService(svc.Spec.Key);
            _dp.RemoveRing(svc.Id);
            StopChecks(svc);
            foreach (var be in svc.Backends.Values)
                _dp.ClearBackend(be.Id);
            _store.DeleteService(name);
            _services.Remove(name);
            LogServiceDeleted(_log, name);
        }
        _ = Task.Run(() => VipsChanged?.Invoke());
    }

    /// <summary>Adds a backend or sets its weight; a drained backend is undrained.</summary>
    public (BackendView View, bool Created) PutBackend(string service, IPAddress address, int weight)
    {
        ArgumentNullException.ThrowIfNull(address);
        lock (_lock)
        {
            var svc = Find(service);
            bool created = !svc.Backends.TryGetValue(address.ToString(), out var be);
            if (be is null)
            {
                uint id = AllocateBackendId();
                be = new Be(address, id, weight, false) { Health = svc.Spec.HealthCheck is null ? BackendHealth.Unchecked : BackendHealth.Up };
                _dp.ResetStats(null, id);
                _dp.SetBackend(id, LbBackend.Create(address, svc.Id));
                svc.Backends[be.Name] = be;
                StartCheck(svc, be);
            }
            else
            {
                be.Weight = weight;
                be.Drained = false;
            }
            _store.SaveBackend(new BackendSpec(service, address, be.Id, be.Weight, be.Drained));
            Rebuild(svc);
            LogBackendPut(_log, service, be.Name, weight, created);
            return (BackendViewOf(be), created);
        }
    }

    /// <summary>Removes a backend: it leaves the table, and flows remembered for it are re-hashed.</summary>
    public void DeleteBackend(string service, IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        lock (_lock)
        {
            var svc = Find(service);
            var be = FindBackend(svc, address);
            svc.Backends.Remove(be.Name);
            StopCheck(be);
            Rebuild(svc);               // first out of the table,
            _dp.ClearBackend(be.Id);    // then the slot (remembered flows re-hash; nothing names it now)
            _store.DeleteBackend(service, address);
            LogBackendDeleted(_log, service, be.Name);
        }
    }

    /// <summary>
    /// Drains a backend: effective weight 0, so the rebuilt table gives it no new flows, while the
    /// flows the data plane remembers for it (lb_flows) keep going to it.
    /// </summary>
    public BackendView Drain(string service, IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        lock (_lock)
        {
            var svc = Find(service);
            var be = FindBackend(svc, address);
            be.Drained = true;
            _store.SaveBackend(new BackendSpec(service, address, be.Id, be.Weight, true));
            Rebuild(svc);
            LogDrained(_log, service, be.Name);
            return BackendViewOf(be);
        }
    }

    /// <summary>Applies a health result (from a check loop, or a test).</summary>
    public void SetHealth(string service, IPAddress address, bool up)
    {
        lock (_lock)
        {
            if (!_services.TryGetValue(service, out var svc) || !svc.Backends.TryGetValue(address.ToString(), out var be))
                return;
            var h = up ? BackendHealth.Up : BackendHealth.Down;
            if (be.Health == h)
                return;
            be.Health = h;
            HealthTransitions.Add(1);
            if (!up)
            {
                // Out of the table first, then mark it down so that remembered flows re-hash.
                Rebuild(svc);
                _dp.SetBackend(be.Id, LbBackend.Create(be.Address, svc.Id, down: true));
            }
            else
            {
                _dp.SetBackend(be.Id, LbBackend.Create(be.Address, svc.Id));
                Rebuild(svc);
            }
            LogHealth(_log, service, be.Name, up ? "up" : "down");
        }
    }

    /// <summary>Data-plane counters of a service and its backends.</summary>
    public (LbStats Service, IReadOnlyList<(string Address, LbStats Stats)> Backends)? Stats(string name)
    {
        lock (_lock)
        {
            if (!_services.TryGetValue(name, out var svc))
                return null;
            return (_dp.ServiceStats(svc.Id), [.. svc.Backends.Values.Select(b => (b.Name, _dp.BackendStats(b.Id)))]);
        }
    }

    private Svc Find(string name)
    {
        Validation.ServiceName(name);
        return _services.TryGetValue(name, out var s) ? s : throw new ConfigException(ConfigErrorKind.NotFound, "name", $"service '{name}' does not exist");
    }

    private static Be FindBackend(Svc svc, IPAddress address) =>
        svc.Backends.TryGetValue(address.ToString(), out var b) ? b
            : throw new ConfigException(ConfigErrorKind.NotFound, "address", $"service '{svc.Spec.Name}' has no backend {address}");

    /// <summary>
    /// Backend ids come from a cursor stored in SQLite that walks 1..LB_MAX_BACKENDS-1 and skips
    /// ids in use, so a freed id is reused only after every other one has been: flows the data
    /// plane still remembers for a removed backend are re-hashed (its slot is cleared) long before
    /// its id can name another backend.
    /// </summary>
    private uint AllocateBackendId()
    {
        var used = _services.Values.SelectMany(s => s.Backends.Values).Select(b => b.Id).ToHashSet();
        long cursor = _store.GetMeta(NextBackendIdKey, 1);
        for (int i = 0; i < LbMaps.MaxBackends - 1; i++)
        {
            uint id = (uint)((cursor - 1 + i) % (LbMaps.MaxBackends - 1)) + 1;
            if (!used.Contains(id))
            {
                _store.SetMeta(NextBackendIdKey, id % (LbMaps.MaxBackends - 1) + 1);
                return id;
            }
        }
        throw new ConfigException(ConfigErrorKind.Conflict, "address", $"address: all {LbMaps.MaxBackends - 1} backend slots (LB_MAX_BACKENDS) are in use");
    }

    private void WriteBackends(Svc svc)
    {
        foreach (var be in svc.Backends.Values)
            _dp.SetBackend(be.Id, LbBackend.Create(be.Address, svc.Id, be.Health == BackendHealth.Down));
    }

    /// <summary>Builds the service's weighted Maglev table and swaps it in.</summary>
    private void Rebuild(Svc svc)
    {
        var list = svc.Backends.Values.ToList();
        // Panic mode (as Envoy's panic threshold): when every backend that is not drained has failed
        // its check, the checks are more likely wrong (the node lost its route, say) than every
        // backend dead, so the table ignores health rather than drop all of the service's traffic.
        svc.Panic = list.Any(b => b.Health == BackendHealth.Down && !b.Drained && b.Weight > 0) && list.All(b => b.Effective == 0);
        var input = list.Select(b => new MaglevBackend(b.Name, svc.Panic && !b.Drained ? b.Weight : b.Effective)).ToArray();
        using var table = _builder.Build(input);
        uint[] ids = [.. list.Select(b => b.Id)];
        uint[] ring = LbMaps.RingValues(table, ids);
        if (svc.Spec.Encap == Encapsulation.Gue)
        {
            // Daisy chaining (lb.h): a moved slot names its previous backend as second hop, while
            // that backend is still this service's, not down, and of the slot's backend's address
            // family (its address rides in the GUE header of that family: IPv4 in one word, IPv6
            // in four); a drained one qualifies (its connections continue).
            var family = list.ToDictionary(b => b.Id, b => b.Address.AddressFamily);
            var second = list.Where(b => b.Health != BackendHealth.Down).Select(b => b.Id).ToHashSet();
            ring = LbMaps.WithSecondHops(ring, svc.Ring, (f, s) => second.Contains(s) && family.TryGetValue(f, out var ff) && family[s] == ff);
        }
        _dp.SwapRing(svc.Id, ring);
        svc.Ring = ring;
        int[] counts = table.CountByBackend(list.Count);
        for (int i = 0; i < list.Count; i++)
            list[i].Entries = counts[i];
        svc.Generation++;
        Interlocked.Increment(ref _generation);
        RebuildCounter.Add(1);
        LogRebuilt(_log, svc.Spec.Name, svc.Generation, string.Join(' ', list.Select(b => $"{b.Name}={b.Entries}")) + (svc.Panic ? " (panic: every backend failed its check; health ignored)" : ""));
    }

    private void StartChecks(Svc svc)
    {
        foreach (var be in svc.Backends.Values)
            StartCheck(svc, be);
    }

    private void StartCheck(Svc svc, Be be)
    {
        if (!_runHealthChecks || svc.Spec.HealthCheck is not { } hc)
            return;
        string name = svc.Spec.Name;
        var addr = be.Address;
        be.Check = new HealthCheckLoop($"{name}/{be.Name}", ct => HealthProbe.RunAsync(hc, addr, ct), TimeSpan.FromMilliseconds(hc.IntervalMs), hc.Rise, hc.Fall,
            up => SetHealth(name, addr, up), _log, initiallyUp: be.Health != BackendHealth.Down);
    }

    private static void StopChecks(Svc svc)
    {
        foreach (var be in svc.Backends.Values)
            StopCheck(be);
    }

    private static void StopCheck(Be be)
    {
        if (be.Check is { } c)
        {
            be.Check = null;
            _ = c.DisposeAsync().AsTask(); // not awaited under the lock: the loop may be waiting for it
        }
    }

    private ServiceView View(Svc s)
    {
        var hc = s.Spec.HealthCheck;
        return new ServiceView(s.Spec.Name, s.Spec.Vip.ToString(), s.Spec.Port, s.Spec.ProtocolName, s.Spec.EncapName, s.Spec.GuePort,
            hc is null ? null : new HealthCheckView(hc.Kind == HealthCheckKind.Http ? "http" : "tcp", hc.Port, hc.Path, hc.IntervalMs, hc.TimeoutMs, hc.Rise, hc.Fall),
            s.Id, TableSize, s.Generation, s.Panic, [.. s.Backends.Values.Select(BackendViewOf)]);
    }

    private static BackendView BackendViewOf(Be b) =>
        new(b.Name, b.Id, b.Weight, b.Drained, b.Health.ToString().ToLowerInvariant(), b.Effective, b.Entries);

    public void Dispose()
    {
        List<HealthCheckLoop> loops;
        lock (_lock)
        {
            loops = [.. _services.Values.SelectMany(s => s.Backends.Values).Select(b => b.Check).OfType<HealthCheckLoop>()];
            foreach (var be in _services.Values.SelectMany(s => s.Backends.Values))
                be.Check = null;
        }
        foreach (var l in loops)
            l.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }

    [LoggerMessage(EventId = 10, Level = LogLevel.Information, Message = "Restored {Services} services and {Backends} backends from the store")]
    private static partial void LogRestored(ILogger logger, int services, int backends);

    [LoggerMessage(EventId = 11, Level = LogLevel.Information, Message = "Service {Name} {Vip}:{Port}/{Protocol} encap {Encap} (created: {Created})")]
    private static partial void LogServicePut(ILogger logger, string name, IPAddress vip, int port, string protocol, string encap, bool created);

    [LoggerMessage(EventId = 12, Level = LogLevel.Information, Message = "Service {Name} deleted")]
    private static partial void LogServiceDeleted(ILogger logger, string name);

    [LoggerMessage(EventId = 13, Level = LogLevel.Information, Message = "Backend {Service}/{Address} weight {Weight} (created: {Created})")]
    private static partial void LogBackendPut(ILogger logger, string service, string address, int weight, bool created);

    [LoggerMessage(EventId = 14, Level = LogLevel.Information, Message = "Backend {Service}/{Address} deleted")]
    private static partial void LogBackendDeleted(ILogger logger, string service, string address);

    [LoggerMessage(EventId = 15, Level = LogLevel.Information, Message = "Backend {Service}/{Address} drained: no new flows, open flows continue")]
    private static partial void LogDrained(ILogger logger, string service, string address);

    [LoggerMessage(EventId = 16, Level = LogLevel.Warning, Message = "Backend {Service}/{Address} is {State}")]
    private static partial void LogHealth(ILogger logger, string service, string address, string state);

    [LoggerMessage(EventId = 17, Level = LogLevel.Information, Message = "Table of {Service} generation {Generation} swapped in: {Entries}")]
    private static partial void LogRebuilt(ILogger logger, string service, long generation, string entries);
}
