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
    private BpfLink? _link;

    private EgressDataPlane(BpfObject obj) => _obj = obj;

    /// <summary>Path of egress.o next to the assembly.</summary>
    public static string DefaultObjectPath => Path.Combine(AppContext.BaseDirectory, "bpf", "egress.o");

    /// <summary>The XDP program.</summary>
    public BpfProgram Program => _obj.Program("egress_xdp");

    /// <summary>The id of the attached program's link, or null when not attached.</summary>
    public uint? LinkId => _link?.GetInfo().Id;

    /// <summary>Loads the object with the shared address and this machine's uplink MAC.</summary>
    public static EgressDataPlane Load(IPAddress shared, PhysicalAddress localMac, string? objectPath = null)
    {
        ArgumentNullException.ThrowIfNull(shared);
        ArgumentNullException.ThrowIfNull(localMac);
        var obj = BpfObject.Load(objectPath ?? DefaultObjectPath, new BpfObjectOptions
        {
            Constants = new Dictionary<string, byte[]>
            {
                ["egress_shared_v4"] = shared.GetAddressBytes(),
                ["egress_local_mac"] = localMac.GetAddressBytes(),
            },
        });
        return new EgressDataPlane(obj);
    }

    /// <summary>
    /// Writes the whole port table: this machine's range local, each peer's range to its owner slot
    /// (2, 3, ...), every other port nobody's. Owners are written before the ports that name them.
    /// </summary>
    public void SetOwners(PortRange local, IReadOnlyList<EgressPeer> peers)
    {
        ArgumentNullException.ThrowIfNull(peers);
        var owners = _obj.Map("egress_owners").AsMap<uint, EgressOwner>();
        var peerMacs = _obj.Map("egress_peer_macs").AsMap<ulong, uint>();
        var stale = new List<ulong>();
        foreach (ulong k in peerMacs.Keys)
            stale.Add(k);
        foreach (ulong k in stale)
            peerMacs.Delete(k);
        var values = new uint[PortCount];
        for (int i = 0; i < peers.Count; i++)
        {
            var o = default(EgressOwner);
            byte[] mac = peers[i].Mac.GetAddressBytes();
            unsafe
            {
                for (int b = 0; b < 6; b++)
                    o.Mac[b] = mac[b];
            }
            uint slot = (uint)i + 2;
            owners.Update(slot, o);
            peerMacs.Update(MacKey(mac), slot);
            for (int p = peers[i].Ports.First; p <= peers[i].Ports.Last; p++)
                values[p] = slot;
        }
        for (int p = local.First; p <= local.Last; p++)
            values[p] = PortLocal;
        WritePorts(values);
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

    private void WritePorts(uint[] values)
    {
        var ports = _obj.Map("egress_ports").AsMap<uint, uint>();
        var keys = new uint[PortCount];
        for (uint i = 0; i < PortCount; i++)
            keys[i] = i;
        // BPF_MAP_UPDATE_BATCH: a few system calls for the 65,536 entries (array maps support it).
        const int Chunk = 8192;
        for (int off = 0; off < PortCount; off += Chunk)
        {
            int done = 0;
            while (done < Chunk)
            {
                int n = ports.UpdateBatch(keys.AsSpan(off + done, Chunk - done), values.AsSpan(off + done, Chunk - done));
                if (n <= 0)
                    throw new InvalidOperationException($"BPF_MAP_UPDATE_BATCH on egress_ports wrote nothing at port {off + done}");
                done += n;
            }
        }
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
