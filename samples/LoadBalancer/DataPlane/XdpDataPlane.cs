using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Netcore.Xdp;

namespace Netcore.LoadBalancer.DataPlane;

/// <summary>Where and how <see cref="XdpDataPlane"/> loads bpf/lb.o.</summary>
internal sealed record XdpDataPlaneOptions
{
    /// <summary>The object file (bpf/lb.o next to the assembly by default).</summary>
    public string ObjectPath { get; init; } = Path.Combine(AppContext.BaseDirectory, "bpf", "lb.o");

    /// <summary>bpffs directory holding the maps (pinned by name) and the XDP link ("link").</summary>
    public required string PinDirectory { get; init; }

    /// <summary>Interface to attach to; null loads without attaching (tests run packets with BPF_PROG_TEST_RUN).</summary>
    public int? Ifindex { get; init; }

    /// <summary>XDP attach mode of a new link.</summary>
    public XdpMode Mode { get; init; } = XdpMode.Native;

    /// <summary>Logger for load events.</summary>
    public ILogger? Logger { get; init; }
}

/// <summary>
/// The XDP program and its maps, loaded through Netcore.Xdp. Maps are pinned by name under the
/// pin directory (lb.c declares them LIBBPF_PIN_BY_NAME), so a second load reuses them with their
/// contents and counters; the XDP link is pinned as "link". When the link is already pinned for
/// the interface, the freshly loaded program replaces the attached one with BPF_LINK_UPDATE (an
/// atomic swap: the interface is never without a program), which is how a restarted daemon adopts
/// the data plane without a gap.
/// </summary>
internal sealed partial class XdpDataPlane : IDataPlane
{
    public const string ProgramName = "lb_xdp";
    public const string LinkPinName = "link";

    private readonly BpfObject _obj;
    private readonly BpfMap _vips, _backends, _maglev, _config, _flows, _flows6;
    private readonly LbVipTable _vipTable;
    private readonly PerCpuMap<uint, LbStats> _svcStats, _beStats;
    private readonly PerCpuMap<uint, ulong> _global;
    private BpfLink? _link;
    private LbConfig _configValue;
    private readonly Dictionary<uint, LbBackend> _backendsWritten = [];
    private readonly Dictionary<uint, LbService> _servicesWritten = [];

    private XdpDataPlane(BpfObject obj, string pinDirectory)
    {
        _obj = obj;
        PinDirectory = pinDirectory;
        _vips = obj.Map(LbMaps.Vips);
        _backends = obj.Map(LbMaps.Backends);
        _maglev = obj.Map(LbMaps.Maglev);
        _config = obj.Map(LbMaps.Config);
        _flows = obj.Map(LbMaps.Flows);
        _flows6 = obj.Map(LbMaps.Flows6);
        _svcStats = obj.Map(LbMaps.ServiceStats).AsPerCpu<uint, LbStats>();
        _beStats = obj.Map(LbMaps.BackendStats).AsPerCpu<uint, LbStats>();
        _global = obj.Map(LbMaps.Global).AsPerCpu<uint, ulong>();
        var vips = _vips.AsMap<uint, LbVipBucket>();
        _vipTable = new LbVipTable((b, v) => vips.Update(b, v), b => vips.TryLookup(b, out var v) ? v : default);
        obj.Map(LbMaps.Layout).AsMap<uint, uint>().Update(0, LbMaps.LayoutVersion);
    }

    /// <summary>The bpffs directory of the pins.</summary>
    public string PinDirectory { get; }

    /// <inheritdoc />
    public bool Adopted { get; private set; }

    /// <summary>True when the maps existed before this load (their contents and counters were kept).</summary>
    public bool MapsReused { get; private set; }

    /// <summary>The loaded program (for BPF_PROG_TEST_RUN).</summary>
    public BpfProgram Program => _obj.Program(ProgramName);

    /// <summary>The XDP link, when attached.</summary>
    public BpfLink? Link => _link;

    /// <summary>The IPv4 flow memory entry (lb_flows) of a packet's key (<see cref="LbMaps.FlowKey4"/>), if any.</summary>
    public LbFlow4? RememberedFlow4(ulong addrs, ulong key)
    {
        if (!_flows.AsMap<uint, LbFlow4Set>().TryLookup(LbMaps.Flow4Set(LbMaps.Flow4Mix(addrs, (uint)key)), out var set))
            return null;
        foreach (var e in set)
            if (e.addrs == addrs && (e.tag & LbMaps.Flow4Key) == key)
                return e;
        return null;
    }

    /// <summary>The IPv6 flow memory entry (lb_flows6) of a packet's key (<see cref="LbMaps.FlowKey6"/>), if any.</summary>
    public LbFlow6? RememberedFlow6(in LbFlow6Key key)
    {
        if (!_flows6.AsMap<uint, LbFlow6Set>().TryLookup(key.Set, out var set))
            return null;
        foreach (var e in set)
            if (e.Is(key))
                return e;
        return null;
    }

    /// <summary>Forgets a remembered IPv4 flow (its way is zeroed; a packet of it then follows the ring).</summary>
    public void ForgetFlow4(ulong addrs, ulong key)
    {
        var map = _flows.AsMap<uint, LbFlow4Set>();
        uint s = LbMaps.Flow4Set(LbMaps.Flow4Mix(addrs, (uint)key));
        if (!map.TryLookup(s, out var set))
            return;
        for (int w = 0; w < 2; w++)
            if (set[w].addrs == addrs && (set[w].tag & LbMaps.Flow4Key) == key)
                set[w] = default;
        map.Update(s, set);
    }

    /// <summary>Forgets a remembered IPv6 flow.</summary>
    public void ForgetFlow6(in LbFlow6Key key)
    {
        var map = _flows6.AsMap<uint, LbFlow6Set>();
        if (!map.TryLookup(key.Set, out var set))
            return;
        for (int w = 0; w < 2; w++)
            if (set[w].Is(key))
                set[w] = default;
        map.Update(key.Set, set);
    }

    /// <summary>
    /// The file system type of the mount holding <paramref name="path"/> in this mount namespace
    /// (from /proc/self/mountinfo, longest mount-point prefix), e.g. "bpf"; null when unknown.
    /// `ip netns exec` remounts /sys in a private mount namespace, which hides the host's bpffs at
    /// /sys/fs/bpf: pins made there would vanish with the process, so the daemon refuses to run so.
    /// </summary>
    public static string? FileSystemOf(string path)
    {
        string full = Path.GetFullPath(path);
        string? best = null, type = null;
        try
        {
            foreach (string line in File.ReadLines("/proc/self/mountinfo"))
            {
                // "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw" (proc(5))
                string[] f = line.Split(' ');
                int dash = Array.IndexOf(f, "-");
                if (f.Length < 5 || dash < 0 || dash + 1 >= f.Length)
                    continue;
                string mount = f[4].Replace("\\040", " ", StringComparison.Ordinal);
                bool under = full == mount || full.StartsWith(mount.EndsWith('/') ? mount : mount + "/", StringComparison.Ordinal);
                if (under && (best is null || mount.Length >= best.Length))
                {
                    best = mount;
                    type = f[dash + 1];
                }
            }
        }
        catch (IOException)
        {
            return null;
        }
        return type;
    }

    /// <summary>Loads (or adopts) the data plane.</summary>
    public static XdpDataPlane Open(XdpDataPlaneOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var log = options.Logger ?? NullLogger.Instance;
        Directory.CreateDirectory(options.PinDirectory);
        RemoveOtherLayout(options.PinDirectory, log);
        bool mapsExisted = File.Exists(Path.Combine(options.PinDirectory, LbMaps.Vips));
        var obj = BpfObject.Load(options.ObjectPath, new BpfObjectOptions { PinDirectory = options.PinDirectory, Logger = options.Logger });
        var dp = new XdpDataPlane(obj, options.PinDirectory) { MapsReused = mapsExisted };
        try
        {
            if (options.Ifindex is int ifindex)
                dp.Attach(ifindex, options.Mode, log);
            return dp;
        }
        catch
        {
            dp.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Maps pinned by a daemon with another map layout (lb_layout missing, from before it existed,
    /// or holding another LB_LAYOUT_VERSION) cannot be reused: their shapes differ, so the load
    /// would fail. Their pins are removed (the link is kept, so the new program still replaces
    /// the attached one atomically); the maps start empty and the configuration is written again
    /// from the store, but counters and remembered flows are lost, which is logged.
    /// </summary>
    private static void RemoveOtherLayout(string pinDirectory, ILogger log)
    {
        var maps = Directory.EnumerateFiles(pinDirectory).Select(Path.GetFileName).Where(n => n != LinkPinName).ToList();
        if (maps.Count == 0)
            return;
        string layoutPin = Path.Combine(pinDirectory, LbMaps.Layout);
        uint? found = null;
        if (File.Exists(layoutPin))
        {
            using var layout = BpfMap.FromPin(layoutPin);
            if (layout.KeySize == 4 && layout.ValueSize == 4 && layout.AsMap<uint, uint>().TryLookup(0, out uint v))
                found = v;
        }
        if (found == LbMaps.LayoutVersion)
            return;
        LogOtherLayout(log, pinDirectory, found?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none", LbMaps.LayoutVersion, string.Join(' ', maps));
        foreach (string? name in maps)
            File.Delete(Path.Combine(pinDirectory, name!));
    }

    private void Attach(int ifindex, XdpMode mode, ILogger log)
    {
        string linkPin = Path.Combine(PinDirectory, LinkPinName);
        if (File.Exists(linkPin))
        {
            var link = BpfLink.FromPin(linkPin);
            var info = link.GetInfo();
            if (info.Ifindex == ifindex)
            {
                uint oldProgram = info.ProgramId;
                link.Update(Program);
                _link = link;
                Adopted = true;
                LogAdopted(log, info.Id, ifindex, oldProgram, Program.GetInfo().Id);
                return;
            }
            // The interface went away (a detached link reports ifindex 0) or this is another one.
            LogStaleLink(log, linkPin, info.Ifindex, ifindex);
            link.Dispose();
            File.Delete(linkPin);
        }
        _link = Program.AttachXdp(ifindex, mode);
        _link.Pin(linkPin);
        LogAttached(log, _link.GetInfo().Id, ifindex, mode);
    }

    /// <summary>Detaches the program and removes every pin (the maps go when the last fd closes).</summary>
    public void DetachAndUnpin()
    {
        _link?.Detach();
        foreach (string f in Directory.EnumerateFiles(PinDirectory))
            File.Delete(f);
        Directory.Delete(PinDirectory);
    }

    /// <inheritdoc />
    public void SetConfig(in LbConfig config)
    {
        _config.AsMap<uint, LbConfig>().Update(0, config);
        _configValue = config;
        // lb_backend carries a template of the configuration (bpf/lb.h): refresh every backend.
        foreach (var (id, b) in _backendsWritten)
            WriteBackend(id, b);
    }

    /// <inheritdoc />
    public bool HasRoomFor(in LbServiceKey key) => _vipTable.HasRoomFor(key);

    /// <inheritdoc />
    public void SetService(in LbServiceKey key, in LbService value)
    {
        bool changed = !_servicesWritten.TryGetValue(value.id, out var old) || old.encap != value.encap || old.gue_port != value.gue_port;
        _servicesWritten[value.id] = value;
        // lb_backend carries the service's encapsulation for remembered flows (bpf/lb.h): refresh
        // the service's backends first, so that no packet finds the service in lb_vips and then a
        // backend without its settings; the next packet of a remembered flow uses the new ones.
        if (changed)
            foreach (var (id, b) in _backendsWritten)
                if (b.service == value.id)
                    WriteBackend(id, b);
        _vipTable.Set(key, value);
    }

    /// <summary>
    /// Removes a service from lb_vips, then forgets the flows remembered for its key: remembered
    /// flows are forwarded without the service lookup (bpf/lb.h lb_flows, lb_flows6), so
    /// without this they would go on to the service's backends. (A deleted service's backends are
    /// cleared too, which stops them as well; this covers a service whose VIP, port or protocol
    /// changed and keeps its backends.) Packets already past lb_vips on another CPU meanwhile are
    /// forwarded, as in any update.
    /// </summary>
    public void RemoveService(in LbServiceKey key)
    {
        _vipTable.Remove(key);
        if (key.family == LbMaps.FamilyV4)
            ForgetFlowsTo(key);
        else
            ForgetFlows6To(key);
    }

    /// <summary>The same as <see cref="ForgetFlowsTo"/> for lb_flows6 and an IPv6 key.</summary>
    private unsafe void ForgetFlows6To(in LbServiceKey key)
    {
        ulong d0, d1;
        fixed (byte* a = key.addr)
        {
            d0 = *(ulong*)a;
            d1 = *(ulong*)(a + 8);
        }
        ushort dport = key.port;
        ulong udp = key.proto == (byte)System.Net.Sockets.ProtocolType.Udp ? LbMaps.Flow4Udp : 0;
        ForgetWhere<LbFlow6Set, LbFlow6>(_flows6, e => (e.tag & LbMaps.Flow4Valid) != 0 && e.daddr0 == d0 && e.daddr1 == d1 &&
            (ushort)(e.tag >> 16) == dport && (e.tag & LbMaps.Flow4Udp) == udp);
    }

    /// <summary>
    /// Zeroes every lb_flows entry whose destination (address, port, protocol) is the key's: the
    /// flow memory is read in batches and the sets that change are written back. A flow the
    /// program inserts into such a set meanwhile may be forgotten with it; a forgotten flow
    /// follows the ring again, so that is never wrong, only a re-hash.
    /// </summary>
    private unsafe void ForgetFlowsTo(in LbServiceKey key)
    {
        uint daddr;
        ushort dport = key.port;
        fixed (byte* a = key.addr)
            daddr = *(uint*)a;
        ulong udp = key.proto == (byte)System.Net.Sockets.ProtocolType.Udp ? LbMaps.Flow4Udp : 0;
        ForgetWhere<LbFlow4Set, LbFlow4>(_flows, e => (e.tag & LbMaps.Flow4Valid) != 0 && (uint)(e.addrs >> 32) == daddr &&
            (ushort)(e.tag >> 16) == dport && (e.tag & LbMaps.Flow4Udp) == udp);
    }

    /// <summary>Zeroes the ways of a flow memory (sets of <typeparamref name="TWay"/>) that <paramref name="matches"/>, reading in batches and writing back the sets that changed.</summary>
    private static void ForgetWhere<TSet, TWay>(BpfMap flows, Func<TWay, bool> matches) where TSet : unmanaged where TWay : unmanaged
    {
        var map = flows.AsMap<uint, TSet>();
        var cursor = new MapBatchCursor(flows);
        const int chunk = 4096;
        var keys = new uint[chunk];
        var sets = new TSet[chunk];
        var changedKeys = new List<uint>();
        var changedSets = new List<TSet>();
        while (!cursor.Done)
        {
            int n = map.LookupBatch(cursor, keys, sets);
            for (int i = 0; i < n; i++)
            {
                Span<TWay> ways = System.Runtime.InteropServices.MemoryMarshal.Cast<TSet, TWay>(sets.AsSpan(i, 1));
                bool changed = false;
                for (int w = 0; w < ways.Length; w++)
                {
                    if (matches(ways[w]))
                    {
                        ways[w] = default;
                        changed = true;
                    }
                }
                if (changed)
                {
                    changedKeys.Add(keys[i]);
                    changedSets.Add(sets[i]);
                }
            }
        }
        if (changedKeys.Count > 0)
            map.UpdateBatch(changedKeys.ToArray(), changedSets.ToArray());
    }

    /// <inheritdoc />
    public void RemoveRing(uint serviceId) => _maglev.AsMap<uint, uint>().Delete(serviceId);

    /// <inheritdoc />
    public IReadOnlyList<LbServiceKey> ServiceKeys() => _vipTable.Keys();

    /// <inheritdoc />
    public void SetBackend(uint id, in LbBackend backend)
    {
        WriteBackend(id, backend);
        _backendsWritten[id] = backend;
    }

    /// <inheritdoc />
    public bool WasDown(uint id, System.Net.IPAddress address, uint serviceId) =>
        _backends.AsMap<uint, LbBackend>().TryLookup(id, out var pinned) && pinned.MarksDown(address, serviceId);

    private void WriteBackend(uint id, LbBackend backend)
    {
        var b = backend.WithConfig(_configValue);
        var map = _backends.AsMap<uint, LbBackend>();
        if (_servicesWritten.TryGetValue(backend.service, out var svc))
            b = b.WithService(svc);
        else if (map.TryLookup(id, out var pinned) && pinned.service == backend.service && pinned.family != 0)
        {
            // A restarted daemon writes backends before their service: keep the adopted entry's
            // encapsulation so remembered flows are not sent with none meanwhile.
            b.encap = pinned.encap;
            b.gue_port = pinned.gue_port;
        }
        map.Update(id, b.WithTemplate());
    }

    /// <summary>
    /// Clears lb_backends[id] (family 0: flows remembered for it are re-hashed, the ring must not
    /// name it) and adds what it counted to its service's retired counters
    /// (lb_svc_stats[LB_SVC_RETIRED + service], written by this process only), so the service's
    /// totals do not drop. Packets still in flight on other CPUs when the slot is cleared may add a
    /// few counts to the freed backend id after that; they are zeroed when the id is reused.
    /// </summary>
    public void ClearBackend(uint id)
    {
        _backends.AsMap<uint, LbBackend>().Update(id, default);
        if (_backendsWritten.Remove(id, out var b))
        {
            var be = new LbStats[_beStats.CpuCount];
            var retired = new LbStats[_svcStats.CpuCount];
            uint slot = (uint)LbMaps.ServiceRetired + b.service;
            if (_beStats.TryLookup(id, be) && _svcStats.TryLookup(slot, retired))
            {
                for (int c = 0; c < retired.Length; c++)
                {
                    retired[c].packets += be[c].packets;
                    retired[c].bytes += be[c].bytes;
                    retired[c].drops += be[c].drops;
                    retired[c].encap_errors += be[c].encap_errors;
                }
                _svcStats.Update(slot, retired);
            }
        }
    }

    /// <inheritdoc />
    public void SwapRing(uint serviceId, ReadOnlySpan<uint> values)
    {
        using var ring = BpfMap.Create(new BpfMapSpec
        {
            Type = BpfMapType.Array, KeySize = 4, ValueSize = 4, MaxEntries = (uint)values.Length,
            Flags = BpfMapFlags.InnerMap, Name = "lb_ring",
        });
        uint[] keys = new uint[values.Length];
        for (uint i = 0; i < keys.Length; i++)
            keys[i] = i;
        var typed = ring.AsMap<uint, uint>();
        int done = 0;
        while (done < keys.Length)
            done += typed.UpdateBatch(keys.AsSpan(done), values[done..]);
        // The ring is complete before any packet can see it; this one update is the swap.
        _maglev.UpdateFd(serviceId, ring.Fd);
    }

    /// <inheritdoc />
    public uint[]? ReadRing(uint serviceId)
    {
        // A lookup in an ARRAY_OF_MAPS from user space gives the inner map's id (0: no ring).
        if (!_maglev.AsMap<uint, uint>().TryLookup(serviceId, out uint id) || id == 0)
            return null;
        BpfMap ring;
        try
        {
            ring = BpfMap.FromId(id);
        }
        catch (BpfException)
        {
            return null; // replaced and freed meanwhile: there is no ring to keep
        }
        using (ring)
        {
            var values = new uint[ring.MaxEntries];
            var keys = new uint[values.Length];
            var typed = ring.AsMap<uint, uint>();
            var cursor = new MapBatchCursor(ring);
            int done = 0;
            while (!cursor.Done && done < values.Length)
                done += typed.LookupBatch(cursor, keys.AsSpan(done), values.AsSpan(done));
            return done == values.Length ? values : null;
        }
    }

    /// <summary>
    /// A service's counters summed over CPUs: its own (packets that got no backend), those of the
    /// backends it had (retired) and those of its backends now (bpf/lb.h: a packet that reaches a
    /// backend is counted on the backend only).
    /// </summary>
    public LbStats ServiceStats(uint serviceId)
    {
        var s = Sum(_svcStats, serviceId);
        Add(ref s, Sum(_svcStats, (uint)LbMaps.ServiceRetired + serviceId));
        foreach (var (id, b) in _backendsWritten)
            if (b.service == serviceId)
                Add(ref s, Sum(_beStats, id));
        return s;
    }

    /// <inheritdoc />
    public LbStats BackendStats(uint backendId) => Sum(_beStats, backendId);

    private static void Add(ref LbStats s, in LbStats x)
    {
        s.packets += x.packets;
        s.bytes += x.bytes;
        s.drops += x.drops;
        s.encap_errors += x.encap_errors;
    }

    /// <inheritdoc />
    public ulong Global(LbGlobalCounter counter)
    {
        Span<ulong> v = stackalloc ulong[_global.CpuCount];
        ulong s = 0;
        if (_global.TryLookup((uint)counter, v))
            foreach (ulong x in v)
                s += x;
        return s;
    }

    /// <inheritdoc />
    public void ResetStats(uint? serviceId, uint? backendId)
    {
        var zero = new LbStats[_svcStats.CpuCount];
        if (serviceId is uint s)
        {
            _svcStats.Update(s, zero);
            _svcStats.Update((uint)LbMaps.ServiceRetired + s, zero);
        }
        if (backendId is uint b)
            _beStats.Update(b, zero);
    }

    private static LbStats Sum(PerCpuMap<uint, LbStats> map, uint key)
    {
        var v = new LbStats[map.CpuCount];
        var s = default(LbStats);
        if (map.TryLookup(key, v))
        {
            foreach (var x in v)
                Add(ref s, x);
        }
        return s;
    }

    /// <summary>Closes the fds; the pinned link keeps the program attached.</summary>
    public void Dispose()
    {
        _link?.Dispose();
        _obj.Dispose();
    }

    [LoggerMessage(EventId = 51, Level = LogLevel.Information, Message = "Adopted the pinned XDP link {LinkId} on ifindex {Ifindex}: program {OldProgram} replaced atomically by {NewProgram}; maps kept")]
    private static partial void LogAdopted(ILogger logger, uint linkId, int ifindex, uint oldProgram, uint newProgram);

    [LoggerMessage(EventId = 52, Level = LogLevel.Warning, Message = "Pinned link {Path} is on ifindex {Old}, not {New}; attaching a new link")]
    private static partial void LogStaleLink(ILogger logger, string path, int old, int @new);

    [LoggerMessage(EventId = 54, Level = LogLevel.Warning, Message = "Pinned maps in {Directory} have map layout {Found}, not {Expected}: removed ({Maps}); they are recreated empty, the configuration is written again from the store, counters and remembered flows start over")]
    private static partial void LogOtherLayout(ILogger logger, string directory, string found, uint expected, string maps);

    [LoggerMessage(EventId = 53, Level = LogLevel.Information, Message = "Attached XDP link {LinkId} on ifindex {Ifindex} ({Mode})")]
    private static partial void LogAttached(ILogger logger, uint linkId, int ifindex, XdpMode mode);
}
