using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using Netcore.Interop;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>A generic netlink family as resolved through the "nlctrl" controller (CTRL_CMD_GETFAMILY).</summary>
/// <param name="Name">Family name, e.g. "ethtool".</param>
/// <param name="Id">The dynamic family id used as nlmsg_type.</param>
/// <param name="Version">CTRL_ATTR_VERSION.</param>
/// <param name="MaxAttribute">CTRL_ATTR_MAXATTR.</param>
/// <param name="MulticastGroups">Group name to group id (CTRL_ATTR_MCAST_GROUPS).</param>
public sealed record GenericFamily(string Name, ushort Id, uint Version, uint MaxAttribute, IReadOnlyDictionary<string, uint> MulticastGroups);

/// <summary>ethtool channel counts (ETHTOOL_MSG_CHANNELS_GET, linux/ethtool_netlink.h).</summary>
/// <param name="RxMax">ETHTOOL_A_CHANNELS_RX_MAX.</param>
/// <param name="TxMax">ETHTOOL_A_CHANNELS_TX_MAX.</param>
/// <param name="CombinedMax">ETHTOOL_A_CHANNELS_COMBINED_MAX.</param>
/// <param name="Rx">ETHTOOL_A_CHANNELS_RX_COUNT.</param>
/// <param name="Tx">ETHTOOL_A_CHANNELS_TX_COUNT.</param>
/// <param name="Combined">ETHTOOL_A_CHANNELS_COMBINED_COUNT.</param>
public sealed record EthtoolChannels(uint RxMax, uint TxMax, uint CombinedMax, uint Rx, uint Tx, uint Combined);

/// <summary>Duplex of a link (linux/ethtool.h DUPLEX_*).</summary>
public enum EthtoolDuplex
{
    /// <summary>DUPLEX_HALF.</summary>
    Half = 0,
    /// <summary>DUPLEX_FULL.</summary>
    Full = 1,
    /// <summary>DUPLEX_UNKNOWN (0xff), or not reported.</summary>
    Unknown = 0xFF,
}

/// <summary>Speed, duplex and autonegotiation of a link (ETHTOOL_MSG_LINKMODES_GET, `ethtool DEV`).</summary>
/// <param name="SpeedMbps">ETHTOOL_A_LINKMODES_SPEED in Mb/s; null for SPEED_UNKNOWN or when not reported.</param>
/// <param name="Duplex">ETHTOOL_A_LINKMODES_DUPLEX.</param>
/// <param name="Autonegotiation">ETHTOOL_A_LINKMODES_AUTONEG (AUTONEG_ENABLE = 1); null when not reported.</param>
/// <param name="Lanes">ETHTOOL_A_LINKMODES_LANES; null when the driver does not report lanes.</param>
public sealed record EthtoolLinkModes(uint? SpeedMbps, EthtoolDuplex Duplex, bool? Autonegotiation, uint? Lanes);

/// <summary>
/// A generic netlink (NETLINK_GENERIC) client bound to a namespace: family and multicast group
/// resolution with a cache, and the ethtool family (link state, channels). Thread-safe.
/// </summary>
public sealed class GenericNetlinkClient : IDisposable
{
    private const byte ETHTOOL_MSG_LINKMODES_GET = 4;
    private const ushort ETHTOOL_A_LINKMODES_HEADER = 1, ETHTOOL_A_LINKMODES_AUTONEG = 2, ETHTOOL_A_LINKMODES_SPEED = 5, ETHTOOL_A_LINKMODES_DUPLEX = 6, ETHTOOL_A_LINKMODES_LANES = 9;
    private const uint SPEED_UNKNOWN = 0xFFFF_FFFF;
    private const byte ETHTOOL_MSG_LINKSTATE_GET = 6, ETHTOOL_MSG_CHANNELS_GET = 17, ETHTOOL_MSG_CHANNELS_SET = 18;
    private const ushort ETHTOOL_A_HEADER_DEV_INDEX = 1, ETHTOOL_A_HEADER_DEV_NAME = 2;
    private const ushort ETHTOOL_A_LINKSTATE_HEADER = 1, ETHTOOL_A_LINKSTATE_LINK = 2;
    private const ushort ETHTOOL_A_CHANNELS_HEADER = 1, ETHTOOL_A_CHANNELS_RX_MAX = 2, ETHTOOL_A_CHANNELS_TX_MAX = 3;
    private const ushort ETHTOOL_A_CHANNELS_COMBINED_MAX = 5, ETHTOOL_A_CHANNELS_RX_COUNT = 6, ETHTOOL_A_CHANNELS_TX_COUNT = 7, ETHTOOL_A_CHANNELS_COMBINED_COUNT = 9;

    private readonly NetlinkSocket _socket;
    private readonly Lock _lock = new();
    private readonly ConcurrentDictionary<string, GenericFamily> _families = new(StringComparer.Ordinal);

    private GenericNetlinkClient(NetlinkSocket socket) => _socket = socket;

    /// <summary>Opens a client in <paramref name="ns"/> (the process's namespace when null).</summary>
    public static GenericNetlinkClient Open(NetworkNamespace? ns = null) =>
        new((ns ?? NetworkNamespace.Current).Run(() => NetlinkSocket.Create(Nl.NETLINK_GENERIC)));

    /// <summary>Resolves a family by name (cached); a missing family is <see cref="NetlinkKernelLacksException"/>.</summary>
    public ValueTask<GenericFamily> GetFamilyAsync(string name, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        cancellationToken.ThrowIfCancellationRequested();
        if (_families.TryGetValue(name, out GenericFamily? f))
            return new(f);
        try
        {
            f = Request(Nl.GENL_ID_CTRL, Nl.CTRL_CMD_GETFAMILY, 1, $"CTRL_CMD_GETFAMILY {name}",
                w => w.String(Nl.CTRL_ATTR_FAMILY_NAME, name), ParseFamily);
        }
        catch (NetlinkException e) when (e.NativeErrorCode == (int)Errno.ENOENT)
        {
            throw new NetlinkKernelLacksException($"CTRL_CMD_GETFAMILY {name}", $"generic netlink family '{name}'", e.NativeErrorCode, e.ExtendedAckMessage);
        }
        _families[name] = f;
        return new(f);
    }

    /// <summary>Whether the link reports carrier (ETHTOOL_MSG_LINKSTATE_GET, ETHTOOL_A_LINKSTATE_LINK); null when the driver does not say.</summary>
    public async ValueTask<bool?> GetLinkStateAsync(string ifname, CancellationToken cancellationToken = default)
    {
        GenericFamily f = await GetFamilyAsync("ethtool", cancellationToken).ConfigureAwait(false);
        return Request(f.Id, ETHTOOL_MSG_LINKSTATE_GET, (byte)f.Version, $"ETHTOOL_MSG_LINKSTATE_GET {ifname}",
            w => WriteHeader(w, ETHTOOL_A_LINKSTATE_HEADER, ifname),
            v =>
            {
                bool? link = null;
                var a = new AttributeReader(v);
                while (a.TryRead(out ushort t, out ReadOnlySpan<byte> x))
                    if (t == ETHTOOL_A_LINKSTATE_LINK) link = Attr.U8(x) != 0;
                return link;
            });
    }

    /// <summary>Speed, duplex, autonegotiation and lanes of a link (ETHTOOL_MSG_LINKMODES_GET; what `ethtool DEV` prints).</summary>
    public async ValueTask<EthtoolLinkModes> GetLinkModesAsync(string ifname, CancellationToken cancellationToken = default)
    {
        GenericFamily f = await GetFamilyAsync("ethtool", cancellationToken).ConfigureAwait(false);
        return Request(f.Id, ETHTOOL_MSG_LINKMODES_GET, (byte)f.Version, $"ETHTOOL_MSG_LINKMODES_GET {ifname}",
            w => WriteHeader(w, ETHTOOL_A_LINKMODES_HEADER, ifname), ParseLinkModes);
    }

    internal static EthtoolLinkModes ParseLinkModes(ReadOnlySpan<byte> attrs)
    {
        uint? speed = null, lanes = null;
        bool? autoneg = null;
        EthtoolDuplex duplex = EthtoolDuplex.Unknown;
        var a = new AttributeReader(attrs);
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            switch (t)
            {
                // linux/ethtool.h: SPEED_UNKNOWN is (u32)-1; DUPLEX_UNKNOWN 0xff; other duplex values are not defined.
                case ETHTOOL_A_LINKMODES_SPEED: speed = Attr.U32(v) is var sp && sp != SPEED_UNKNOWN ? sp : null; break;
                case ETHTOOL_A_LINKMODES_DUPLEX: duplex = Attr.U8(v) switch { 0 => EthtoolDuplex.Half, 1 => EthtoolDuplex.Full, _ => EthtoolDuplex.Unknown }; break;
                case ETHTOOL_A_LINKMODES_AUTONEG: autoneg = Attr.U8(v) != 0; break;
                case ETHTOOL_A_LINKMODES_LANES: lanes = Attr.U32(v); break;
                default: break; // bitsets of supported/advertised modes, master-slave: kept out of this summary
            }
        }
        return new EthtoolLinkModes(speed, duplex, autoneg, lanes);
    }

    /// <summary>Channel counts of a link (`ethtool -l`).</summary>
    public async ValueTask<EthtoolChannels> GetChannelsAsync(string ifname, CancellationToken cancellationToken = default)
    {
        GenericFamily f = await GetFamilyAsync("ethtool", cancellationToken).ConfigureAwait(false);
        return Request(f.Id, ETHTOOL_MSG_CHANNELS_GET, (byte)f.Version, $"ETHTOOL_MSG_CHANNELS_GET {ifname}",
            w => WriteHeader(w, ETHTOOL_A_CHANNELS_HEADER, ifname), ParseChannels);
    }

    /// <summary>Sets channel counts (`ethtool -L`); null members are left unchanged.</summary>
    public async ValueTask SetChannelsAsync(string ifname, uint? rx = null, uint? tx = null, uint? combined = null, CancellationToken cancellationToken = default)
    {
        GenericFamily f = await GetFamilyAsync("ethtool", cancellationToken).ConfigureAwait(false);
        lock (_lock)
        {
            using var w = new NetlinkWriter();
            uint seq = _socket.NextSeq();
            w.BeginMessage(f.Id, Nl.NLM_F_REQUEST | Nl.NLM_F_ACK, seq);
            w.Struct(new genlmsghdr { cmd = ETHTOOL_MSG_CHANNELS_SET, version = (byte)f.Version });
            WriteHeader(w, ETHTOOL_A_CHANNELS_HEADER, ifname);
            if (rx is uint r) w.U32(ETHTOOL_A_CHANNELS_RX_COUNT, r);
            if (tx is uint t) w.U32(ETHTOOL_A_CHANNELS_TX_COUNT, t);
            if (combined is uint c) w.U32(ETHTOOL_A_CHANNELS_COMBINED_COUNT, c);
            w.EndMessage();
            _socket.Ack(w.WrittenSpan, seq, $"ETHTOOL_MSG_CHANNELS_SET {ifname}");
        }
    }

    private static void WriteHeader(NetlinkWriter w, ushort type, string ifname)
    {
        // linux/ethtool_netlink.h: requests carry a nested ETHTOOL_A_*_HEADER naming the device.
        int h = w.BeginNested(type);
        w.String(ETHTOOL_A_HEADER_DEV_NAME, ifname);
        w.EndNested(h);
    }

    internal static EthtoolChannels ParseChannels(ReadOnlySpan<byte> attrs)
    {
        uint rxMax = 0, txMax = 0, cMax = 0, rx = 0, tx = 0, c = 0;
        var a = new AttributeReader(attrs);
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            switch (t)
            {
                case ETHTOOL_A_CHANNELS_RX_MAX: rxMax = Attr.U32(v); break;
                case ETHTOOL_A_CHANNELS_TX_MAX: txMax = Attr.U32(v); break;
                case ETHTOOL_A_CHANNELS_COMBINED_MAX: cMax = Attr.U32(v); break;
                case ETHTOOL_A_CHANNELS_RX_COUNT: rx = Attr.U32(v); break;
                case ETHTOOL_A_CHANNELS_TX_COUNT: tx = Attr.U32(v); break;
                case ETHTOOL_A_CHANNELS_COMBINED_COUNT: c = Attr.U32(v); break;
                default: break;
            }
        }
        return new EthtoolChannels(rxMax, txMax, cMax, rx, tx, c);
    }

    internal static GenericFamily ParseFamily(ReadOnlySpan<byte> attrs)
    {
        string name = "";
        ushort id = 0;
        uint version = 0, maxAttr = 0;
        var groups = new Dictionary<string, uint>(StringComparer.Ordinal);
        var a = new AttributeReader(attrs);
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            switch (t)
            {
                case Nl.CTRL_ATTR_FAMILY_ID: id = Attr.U16(v); break;
                case Nl.CTRL_ATTR_FAMILY_NAME: name = Attr.String(v); break;
                case Nl.CTRL_ATTR_VERSION: version = Attr.U32(v); break;
                case Nl.CTRL_ATTR_MAXATTR: maxAttr = Attr.U32(v); break;
                case Nl.CTRL_ATTR_MCAST_GROUPS:
                    // An array: each element is a nest of CTRL_ATTR_MCAST_GRP_NAME / _ID.
                    var arr = new AttributeReader(v);
                    while (arr.TryRead(out _, out ReadOnlySpan<byte> grp))
                    {
                        string? gname = null;
                        uint gid = 0;
                        var g = new AttributeReader(grp);
                        while (g.TryRead(out ushort gt, out ReadOnlySpan<byte> gv))
                        {
                            if (gt == Nl.CTRL_ATTR_MCAST_GRP_NAME) gname = Attr.String(gv);
                            else if (gt == Nl.CTRL_ATTR_MCAST_GRP_ID) gid = Attr.U32(gv);
                        }
                        if (gname is not null)
                            groups[gname] = gid;
                    }
                    break;
                default: break;
            }
        }
        return new GenericFamily(name, id, version, maxAttr, groups);
    }

    private delegate T AttrParser<T>(ReadOnlySpan<byte> attributes);

    private T Request<T>(ushort family, byte cmd, byte version, string operation, Action<NetlinkWriter> body, AttrParser<T> parse)
    {
        lock (_lock)
        {
            using var w = new NetlinkWriter();
            uint seq = _socket.NextSeq();
            w.BeginMessage(family, Nl.NLM_F_REQUEST, seq);
            w.Struct(new genlmsghdr { cmd = cmd, version = version });
            body(w);
            w.EndMessage();
            if (!_socket.Get(w.WrittenSpan, seq, operation, (in NetlinkMessage m, out T v) =>
                {
                    v = parse(m.Attributes(Unsafe.SizeOf<genlmsghdr>()).Rest());
                    return true;
                }, out T value))
                throw new NetlinkException(operation, (int)Errno.ENODATA, "no reply");
            return value;
        }
    }

    /// <summary>Closes the socket.</summary>
    public void Dispose() => _socket.Dispose();
}
