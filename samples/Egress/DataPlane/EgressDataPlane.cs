using System.Net;
using System.Net.NetworkInformation;
using System.Runtime.InteropServices;
using Netcore.Egress.Daemon;
using Netcore.Xdp;

namespace Netcore.Egress.DataPlane;

/// <summary>egress_stats indices (bpf/egress.c EGRESS_*).</summary>
internal enum EgressCounter : uint
{
    /// <summary>Another machine's port: sent to it with XDP_TX.</summary>
    Forwarded = 0,
    /// <summary>This machine's port: passed to the stack.</summary>
    Local = 1,
    /// <summary>Not for the shared address, not TCP/UDP/ICMP error, a fragment, or nobody's port: passed.</summary>
    Passed = 2,
    /// <summary>To the shared address with a cut or invalid header: passed.</summary>
    Malformed = 3,
    /// <summary>Another machine's port in a frame another machine sent here (the tables disagree): passed, never sent on.</summary>
    Bounced = 4,
}

/// <summary>egress_owners value (bpf/egress.c struct egress_owner).</summary>
[StructLayout(LayoutKind.Sequential, Size = 8)]
internal unsafe struct EgressOwner
{
    public fixed byte Mac[6];
    public ushort Pad;
}

/// <summary>
/// bpf/egress.o loaded through Netcore.Xdp: the shared address and this machine's MAC set before
/// load, the port → owner table filled from the configuration, per-CPU counters read back. The
/// XDP attachment is a bpf_link held by this object (not pinned), so the program is detached when
/// it is disposed or the process dies.
/// </summary>
internal sealed class EgressDataPlane : IDisposable
{
    /// <summary>egress_ports value of a port nobody owns.</summary>
    public const uint PortNone = 0;

    /// <summary>egress_ports value of this machine's ports.</summary>
    public const uint PortLocal = 1;

    private const int PortCount = 65536;
    private readonly BpfObject _obj;
    // What egress_ports holds (zero after load) and the owner slot of each peer MAC key.
    private readonly uint[] _ports = new uint[PortCount];
    private readonly Dictionary<ulong, uint> _slots = [];
    private BpfLink? _link;

    private EgressDataPlane(BpfObject obj) => _obj = obj;

    /// <summary>Path of egress.o next to the assembly.</summary>
    public static string DefaultObjectPath => Path.Combine(AppContext.BaseDirectory, "bpf", "egress.o");

    /// <summary>The XDP program.</summary>
    public BpfProgram Program => _obj.Program("egress_xdp");

    /// <summary>The id of the attached program's link, or null when not attached.</summary>
    public uint? LinkId => _link?.GetInfo().Id;

    /// <summary>
    /// The interface the program is attached to now, or 0: the kernel reports ifindex 0 for an XDP
    /// link that was detached (BPF_LINK_DETACH by someone else, or the device went away).
    /// </summary>
    public int AttachedIfindex => _link?.GetInfo().Ifindex ?? 0;

    /// <summary>
    /// Loads the object with the shared IPv4 address, the shared IPv6 address (null: none, the
    /// program then passes every IPv6 packet) and this machine's uplink MAC.
    /// </summary>
    public static EgressDataPlane Load(IPAddress? shared, IPAddress? shared6, PhysicalAddress localMac, string? objectPath = null)
    {
        ArgumentNullException.ThrowIfNull(localMac);
        if (shared6 is not null && shared6.AddressFamily != System.Net.Sockets.AddressFamily.InterNetworkV6)
            throw new ArgumentException($"{shared6} is not an IPv6 address", nameof(shared6));
        var obj = BpfObject.Load(objectPath ?? DefaultObjectPath, new BpfObjectOptions
        {
            Constants = new Dictionary<string, byte[]>
            {
                // 0.0.0.0 without a shared IPv4 address (IPv6 only): no packet has it as destination.
                ["egress_shared_v4"] = shared?.GetAddressBytes() ?? new byte[4],
                // 16 bytes in network order (the program compares them as four __be32); zero: none.
                ["egress_shared_v6"] = shared6?.GetAddressBytes() ?? new byte[16],
                ["egress_local_mac"] = localMac.GetAddressBytes(),
            },
        });
        return new EgressDataPlane(obj);
    }

    /// <summary>
    /// Makes the port table say: this machine's range local, each peer's range its owner slot, every
    /// other port nobody's. Applied so that a packet never sees a port without a valid owner: a
    /// peer keeps its slot while its MAC stays a peer's (slots are stable across updates; a new
    /// peer gets a slot no port names), the new slots' MACs are written before any port names them,
    /// then only the ports whose owner changes are written (each straight from the old owner to the
    /// new one; an array entry is one aligned u32, so a lookup reads the old or the new value), and
    /// the removed peers' MACs go last. Returns the number of port entries written.
    /// </summary>
    public int SetOwners(PortRange local, IReadOnlyList<EgressPeer> peers)
    {
        ArgumentNullException.ThrowIfNull(peers);
        var owners = _obj.Map("egress_owners").AsMap<uint, EgressOwner>();
        var peerMacs = _obj.Map("egress_peer_macs").AsMap<ulong, uint>();
        var next = new Dictionary<ulong, uint>();
        foreach (var p in peers)
        {
            ulong key = MacKey(p.Mac.GetAddressBytes());
            if (_slots.TryGetValue(key, out uint s))
                next[key] = s;
        }
        foreach (var p in peers)
        {
            byte[] mac = p.Mac.GetAddressBytes();
            ulong key = MacKey(mac);
            if (next.ContainsKey(key))
                continue;
            // The lowest slot neither kept nor still named by a port of the table in force; only when
            // all 254 are taken is a slot of a removed peer reused (its ports are rewritten below).
            uint slot = FreeSlot(next.Values, _slots.Values) ?? FreeSlot(next.Values, [])
                ?? throw new EgressConfigException("peers", $"at most {EgressConfig.MaxPeers} other machines");
            next[key] = slot;
            var o = default(EgressOwner);
            unsafe
            {
                for (int b = 0; b < 6; b++)
                    o.Mac[b] = mac[b];
            }
            owners.Update(slot, o);
            peerMacs.Update(key, slot);
        }
        var values = new uint[PortCount];
        foreach (var p in peers)
        {
            uint slot = next[MacKey(p.Mac.GetAddressBytes())];
            for (int port = p.Ports.First; port <= p.Ports.Last; port++)
                values[port] = slot;
        }
        for (int port = local.First; port <= local.Last; port++)
            values[port] = PortLocal;
        int written = WritePorts(values);
        foreach (ulong gone in _slots.Keys.Where(k => !next.ContainsKey(k)).ToList())
            peerMacs.Delete(gone);
        _slots.Clear();
        foreach (var (k, v) in next)
            _slots[k] = v;
        return written;
    }

    /// <summary>The owner slot of each peer MAC in force (as written by <see cref="SetOwners"/>).</summary>
    public uint SlotOf(PhysicalAddress mac) => _slots.GetValueOrDefault(MacKey(mac.GetAddressBytes()));

    private static uint? FreeSlot(IEnumerable<uint> taken, IEnumerable<uint> avoid)
    {
        var used = new HashSet<uint>(taken);
        used.UnionWith(avoid);
        for (uint s = 2; s < 2 + EgressConfig.MaxPeers; s++)
            if (!used.Contains(s))
                return s;
        return null;
    }

    /// <summary>egress_peer_macs key: the 6 bytes in frame order in the low bytes of a u64 (little-endian host).</summary>
    private static ulong MacKey(byte[] mac)
    {
        Span<byte> k = stackalloc byte[8];
        k.Clear();
        mac.AsSpan(0, 6).CopyTo(k);
        return BitConverter.ToUInt64(k);
    }

    /// <summary>Marks every port nobody's (the program then passes everything).</summary>
    public void ClearOwners() => WritePorts(new uint[PortCount]);

    /// <summary>Writes the entries of <paramref name="values"/> that differ from the table in force; returns how many.</summary>
    private int WritePorts(uint[] values)
    {
        var ports = _obj.Map("egress_ports").AsMap<uint, uint>();
        var keys = new List<uint>();
        var vals = new List<uint>();
        for (uint i = 0; i < PortCount; i++)
        {
            if (values[i] != _ports[i])
            {
                keys.Add(i);
                vals.Add(values[i]);
            }
        }
        uint[] k = [.. keys], v = [.. vals];
        // BPF_MAP_UPDATE_BATCH: a few system calls for up to 65,536 entries (array maps support it);
        // each entry is still written on its own (kernel/bpf/arraymap.c array_map_update_elem).
        const int Chunk = 8192;
        for (int off = 0; off < k.Length;)
        {
            int len = Math.Min(Chunk, k.Length - off);
            int n = ports.UpdateBatch(k.AsSpan(off, len), v.AsSpan(off, len));
            if (n <= 0)
                throw new InvalidOperationException($"BPF_MAP_UPDATE_BATCH on egress_ports wrote nothing at port {k[off]}");
            // What the map holds, entry by entry: after a failure part way, the next call rewrites
            // exactly what differs.
            for (int i = off; i < off + n; i++)
                _ports[k[i]] = v[i];
            off += n;
        }
        return k.Length;
    }

    /// <summary>The owner slot of <paramref name="port"/> as the program sees it.</summary>
    public uint OwnerOf(ushort port) => _obj.Map("egress_ports").AsMap<uint, uint>().Lookup(port);

    /// <summary>A counter summed over CPUs.</summary>
    public ulong Count(EgressCounter counter) => _obj.Map("egress_stats").AsPerCpu<uint, ulong>().Sum((uint)counter);

    /// <summary>Attaches the program to <paramref name="ifindex"/> with a bpf_link (this process's).</summary>
    public void Attach(int ifindex, XdpMode mode)
    {
        if (_link is not null)
            throw new InvalidOperationException("already attached");
        _link = Program.AttachXdp(ifindex, mode);
    }

    /// <summary>Detaches the program (closing the link).</summary>
    public void Detach()
    {
        _link?.Dispose();
        _link = null;
    }

    /// <summary>Detaches and closes the object.</summary>
    public void Dispose()
    {
        Detach();
        _obj.Dispose();
    }
}
