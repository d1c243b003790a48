using System.Net;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using Netcore.Netlink.Core;

namespace Netcore.Netlink;

/// <summary>An interface address (struct ifaddrmsg + IFA_* attributes).</summary>
public sealed record InterfaceAddress
{
    /// <summary>Interface index.</summary>
    public int IfIndex { get; init; }

    /// <summary>The address itself (IFA_LOCAL for IPv4, IFA_ADDRESS for IPv6).</summary>
    public required IPAddress Address { get; init; }

    /// <summary>Prefix length.</summary>
    public int PrefixLength { get; init; }

    /// <summary>Point-to-point peer (IFA_ADDRESS when it differs from IFA_LOCAL).</summary>
    public IPAddress? Peer { get; init; }

    /// <summary>IFA_BROADCAST (IPv4).</summary>
    public IPAddress? Broadcast { get; init; }

    /// <summary>IFA_LABEL (IPv4), e.g. "eth0:1".</summary>
    public string? Label { get; init; }

    /// <summary>ifa_scope.</summary>
    public RouteScope Scope { get; init; }

    /// <summary>IFA_F_* flags (IFA_FLAGS): NODAD 0x02, PERMANENT 0x80, NOPREFIXROUTE 0x200, ...</summary>
    public uint Flags { get; init; }

    /// <summary>Valid lifetime (IFA_CACHEINFO); null is forever.</summary>
    public TimeSpan? ValidLifetime { get; init; }

    /// <summary>Preferred lifetime (IFA_CACHEINFO); null is forever.</summary>
    public TimeSpan? PreferredLifetime { get; init; }

    /// <summary>Address family.</summary>
    public AddressFamily Family => Address.AddressFamily;

    /// <summary>Attributes this version does not decode, kept raw.</summary>
    public IReadOnlyList<RawAttribute> UnknownAttributes { get; init; } = [];
}

/// <summary>IFA_F_* address flags (linux/if_addr.h).</summary>
public static class AddressFlags
{
    /// <summary>IFA_F_NODAD: skip duplicate address detection (IPv6).</summary>
    public const uint NoDad = 0x02;
    /// <summary>IFA_F_PERMANENT.</summary>
    public const uint Permanent = 0x80;
    /// <summary>IFA_F_NOPREFIXROUTE: no prefix route is added.</summary>
    public const uint NoPrefixRoute = 0x200;
}

internal static class AddressCodec
{
    private const uint Forever = 0xFFFFFFFF;

    public static void Write(NetlinkWriter w, InterfaceAddress a, bool forDelete = false)
    {
        byte fam = Af.Of(a.Address.AddressFamily);
        int max = fam == Af.Inet ? 32 : 128;
        if (fam == Af.Unspec || a.PrefixLength < 0 || a.PrefixLength > max)
            throw new ArgumentException($"invalid address {a.Address}/{a.PrefixLength}", nameof(a));
        w.Struct(new ifaddrmsg
        {
            ifa_family = fam,
            ifa_prefixlen = (byte)a.PrefixLength,
            ifa_flags = (byte)a.Flags,
            ifa_scope = (byte)a.Scope,
            ifa_index = (uint)a.IfIndex,
        });
        // net/ipv4/devinet.c: IFA_LOCAL is the address, IFA_ADDRESS the peer (= local when none).
        // net/ipv6/addrconf.c: IFA_ADDRESS is the address, IFA_LOCAL the local end of a peer pair.
        if (fam == Af.Inet)
        {
            w.Address(Nl.IFA_LOCAL, a.Address);
            w.Address(Nl.IFA_ADDRESS, a.Peer ?? a.Address);
        }
        else if (a.Peer is not null)
        {
            w.Address(Nl.IFA_LOCAL, a.Address);
            w.Address(Nl.IFA_ADDRESS, a.Peer);
        }
        else
            w.Address(Nl.IFA_ADDRESS, a.Address);
        if (forDelete)
            return;
        if (a.Broadcast is not null)
            w.Address(Nl.IFA_BROADCAST, a.Broadcast);
        if (a.Label is not null)
            w.String(Nl.IFA_LABEL, a.Label);
        if (a.Flags > 0xFF)
            w.U32(Nl.IFA_FLAGS, a.Flags);
        if (a.ValidLifetime is not null || a.PreferredLifetime is not null)
        {
            uint valid = Seconds(a.ValidLifetime), pref = Seconds(a.PreferredLifetime);
            // net/ipv6/addrconf.c inet6_rtm_newaddr: preferred must not exceed valid.
            if (pref > valid)
                throw new ArgumentException("preferred lifetime exceeds valid lifetime", nameof(a));
            w.Struct(new ifa_cacheinfo { ifa_prefered = pref, ifa_valid = valid }, Nl.IFA_CACHEINFO);
        }
    }

    private static uint Seconds(TimeSpan? t) => t is TimeSpan s ? (uint)Math.Clamp(s.TotalSeconds, 0, Forever - 1) : Forever;

    public static bool TryParse(in NetlinkMessage m, out InterfaceAddress addr)
    {
        addr = null!;
        if (m.Type != Nl.RTM_NEWADDR && m.Type != Nl.RTM_DELADDR)
            return false;
        ifaddrmsg h = m.Header<ifaddrmsg>();
        if (h.ifa_family != Af.Inet && h.ifa_family != Af.Inet6)
            return false;
        IPAddress? local = null, address = null, bcast = null;
        string? label = null;
        uint flags = h.ifa_flags;
        TimeSpan? valid = null, pref = null;
        List<RawAttribute>? unknown = null;
        var a = m.Attributes(Unsafe.SizeOf<ifaddrmsg>());
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            switch (t)
            {
                case Nl.IFA_ADDRESS: address = Attr.Address(v); break;
                case Nl.IFA_LOCAL: local = Attr.Address(v); break;
                case Nl.IFA_BROADCAST: bcast = Attr.Address(v); break;
                case Nl.IFA_LABEL: label = Attr.String(v); break;
                case Nl.IFA_FLAGS: flags = Attr.U32(v); break;
                case Nl.IFA_CACHEINFO:
                    if (v.Length < 16)
                        NetlinkFormatException.Throw("IFA_CACHEINFO shorter than struct ifa_cacheinfo");
                    uint p = Attr.U32(v), vl = Attr.U32(v[4..]);
                    pref = p == Forever ? null : TimeSpan.FromSeconds(p);
                    valid = vl == Forever ? null : TimeSpan.FromSeconds(vl);
                    break;
                case 9 /* IFA_RT_PRIORITY */:
                case 7 /* IFA_MULTICAST */:
                case 10 /* IFA_TARGET_NETNSID */:
                case 11 /* IFA_PROTO */:
                    break;
                default:
                    (unknown ??= []).Add(new RawAttribute(t, v.ToArray()));
                    break;
            }
        }
        IPAddress? main = local ?? address;
        if (main is null)
            return false;
        addr = new InterfaceAddress
        {
            IfIndex = (int)h.ifa_index,
            Address = main,
            PrefixLength = h.ifa_prefixlen,
            Peer = local is not null && address is not null && !local.Equals(address) ? address : null,
            Broadcast = bcast,
            Label = label,
            Scope = (RouteScope)h.ifa_scope,
            Flags = flags,
            ValidLifetime = valid,
            PreferredLifetime = pref,
            UnknownAttributes = unknown ?? (IReadOnlyList<RawAttribute>)[],
        };
        return true;
    }
}

public sealed partial class NetlinkClient
{
    /// <summary>Adds an address (`ip addr add`); <paramref name="replace"/> updates an existing one (`ip addr replace`).</summary>
    public ValueTask AddAddressAsync(InterfaceAddress address, bool replace = false, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_NEWADDR, (ushort)(Nl.NLM_F_CREATE | (replace ? Nl.NLM_F_REPLACE : Nl.NLM_F_EXCL)),
            $"RTM_NEWADDR {address.Address}/{address.PrefixLength} #{address.IfIndex}", w => AddressCodec.Write(w, address));
        return ValueTask.CompletedTask;
    }

    /// <summary>Adds <paramref name="address"/>/<paramref name="prefixLength"/> to a link (IPv6 without DAD when <paramref name="noDad"/>).</summary>
    public ValueTask AddAddressAsync(int ifindex, IPAddress address, int prefixLength, bool noDad = false, CancellationToken cancellationToken = default) =>
        AddAddressAsync(new InterfaceAddress { IfIndex = ifindex, Address = address, PrefixLength = prefixLength, Flags = noDad ? AddressFlags.NoDad : 0 }, false, cancellationToken);

    /// <summary>Removes an address.</summary>
    public ValueTask DeleteAddressAsync(InterfaceAddress address, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        cancellationToken.ThrowIfCancellationRequested();
        Ack(Nl.RTM_DELADDR, 0, $"RTM_DELADDR {address.Address}/{address.PrefixLength} #{address.IfIndex}", w => AddressCodec.Write(w, address, forDelete: true));
        return ValueTask.CompletedTask;
    }

    /// <summary>Addresses (RTM_GETADDR dump), optionally of one family and/or link (filtered by the kernel with strict checking).</summary>
    public IAsyncEnumerable<InterfaceAddress> GetAddressesAsync(AddressFamily? family = null, int? ifindex = null, CancellationToken cancellationToken = default) =>
        DumpAsync<InterfaceAddress>(Nl.RTM_GETADDR, "RTM_GETADDR dump",
            w => w.Struct(new ifaddrmsg { ifa_family = family is { } f ? Af.Of(f) : Af.Unspec, ifa_index = (uint)(ifindex ?? 0) }),
            (in NetlinkMessage m, out InterfaceAddress a) => AddressCodec.TryParse(m, out a) && (ifindex is not int i || a.IfIndex == i) && (family is not { } fa || a.Family == fa),
            cancellationToken);
}
