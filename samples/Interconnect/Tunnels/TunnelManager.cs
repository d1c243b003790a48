using System.Net;
using System.Net.Sockets;
using Netcore.Interconnect.Config;
using Netcore.Netlink;

namespace Netcore.Interconnect.Tunnels;

/// <summary>A link of the tunnel's name exists but is not the tunnel the configuration describes.</summary>
public sealed class TunnelConflictException(string tunnel, string message) : Exception($"tunnel {tunnel}: {message}")
{
    /// <summary>The tunnel's name.</summary>
    public string Tunnel { get; } = tunnel;
}

/// <summary>A tunnel device the daemon set up: its index and what it added (and so removes on stop).</summary>
/// <param name="Name">Device name.</param>
/// <param name="Index">ifindex.</param>
/// <param name="Created">The daemon created the device (false: an existing one of the same spec was adopted and is left in place).</param>
/// <param name="AddressAdded">The daemon added the inner address.</param>
/// <param name="Address6Added">The daemon added the inner IPv6 address.</param>
internal sealed record TunnelDevice(string Name, int Index, bool Created, bool AddressAdded, bool Address6Added = false);

/// <summary>
/// Creates the tunnel devices through Netcore.Netlink (idempotent: an existing device of the same
/// name, kind and endpoints is adopted), puts the inner address on them, and removes what it added.
/// </summary>
internal static class TunnelManager
{
    /// <summary>TTL of gre/ipip outer headers: a fixed TTL lets the kernel do path MTU discovery (ip-tunnel(8): pmtudisc needs a fixed ttl).</summary>
    public const byte OuterTtl = 64;

    /// <summary>The Netcore.Netlink spec of a tunnel (what <c>ip link add NAME type KIND ...</c> would create).</summary>
    public static LinkSpec Spec(TunnelConfig t) => t.Kind switch
    {
        // RFC 7348 4: point to point here, so no learning; the remote is the default destination.
        TunnelKind.Vxlan => new VxlanSpec(t.Name, t.Vni!.Value) { Local = t.Local, Remote = t.Remote, Port = t.Port, Learning = false, Mtu = t.Mtu },
        TunnelKind.Gre => new GreSpec(t.Name, t.Remote, t.Remote.AddressFamily == AddressFamily.InterNetworkV6 ? GreMode.Ip6Gre : GreMode.Gre)
        {
            Local = t.Local, Key = t.Key, Ttl = OuterTtl, Mtu = t.Mtu,
        },
        _ => new IpipSpec(t.Name, t.Remote) { Local = t.Local, Ttl = OuterTtl, Mtu = t.Mtu },
    };

    /// <summary>Creates or adopts the tunnel, sets its MTU, adds the inner address and brings it up.</summary>
    public static async Task<TunnelDevice> EnsureAsync(NetlinkClient nl, TunnelConfig t, CancellationToken ct)
    {
        LinkSpec spec = Spec(t);
        bool created = false;
        Link? link = await nl.TryGetLinkAsync(t.Name, ct).ConfigureAwait(false);
        int index;
        if (link is null)
        {
            index = await nl.CreateLinkAsync(spec, ct).ConfigureAwait(false);
            created = true;
        }
        else
        {
            if (link.Kind != spec.Kind)
                throw new TunnelConflictException(t.Name, $"a link of that name exists with kind '{link.Kind ?? "none"}', not '{spec.Kind}'; rename the tunnel or remove the link");
            if (Differences(link, t) is { Length: > 0 } diff)
                throw new TunnelConflictException(t.Name, $"an existing {spec.Kind} link of that name has other settings ({diff}); remove it or fix the configuration");
            index = link.Index;
        }
        try
        {
            await nl.SetLinkAsync(index, new LinkChanges { Mtu = t.Mtu, Up = true }, ct).ConfigureAwait(false);
            bool added = t.InnerLocal is IPAddress a4 && await AddAddressAsync(nl, index, a4, t.InnerPrefixLength, ct).ConfigureAwait(false);
            // No duplicate address detection on the inner IPv6 address (IFA_F_NODAD): the /127 is the
            // operator's plan for a point-to-point tunnel, and a tentative address could not be bound by
            // the BGP and BFD sockets for the DAD time (RFC 4862 5.4).
            bool added6 = t.InnerLocal6 is IPAddress a6 && await AddAddressAsync(nl, index, a6, t.InnerPrefixLength6, ct).ConfigureAwait(false);
            return new TunnelDevice(t.Name, index, created, added, added6);
        }
        catch when (created)
        {
            await nl.DeleteLinkAsync(index, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    private static async Task<bool> AddAddressAsync(NetlinkClient nl, int index, IPAddress address, int length, CancellationToken ct)
    {
        try
        {
            await nl.AddAddressAsync(index, address, length, noDad: address.AddressFamily == AddressFamily.InterNetworkV6, ct).ConfigureAwait(false);
            return true;
        }
        catch (NetlinkException e) when (e.NativeErrorCode == 17 /* EEXIST: already there, not ours to remove */)
        {
            return false;
        }
    }

    /// <summary>Removes what <see cref="EnsureAsync"/> added: the device it created, or the address it put on an adopted one.</summary>
    public static async Task RemoveAsync(NetlinkClient nl, TunnelDevice d, TunnelConfig t, CancellationToken ct)
    {
        if (d.Created)
        {
            await nl.DeleteLinkAsync(d.Index, ct).ConfigureAwait(false);
            return;
        }
        if (d.AddressAdded && t.InnerLocal is not null)
            await nl.DeleteAddressAsync(new InterfaceAddress { IfIndex = d.Index, Address = t.InnerLocal, PrefixLength = t.InnerPrefixLength }, ct).ConfigureAwait(false);
        if (d.Address6Added && t.InnerLocal6 is not null)
            await nl.DeleteAddressAsync(new InterfaceAddress { IfIndex = d.Index, Address = t.InnerLocal6, PrefixLength = t.InnerPrefixLength6 }, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Settings of an existing link that differ from the tunnel's (from IFLA_INFO_DATA, linux/if_link.h
    /// IFLA_VXLAN_* / IFLA_GRE_* / IFLA_IPTUN_*); empty when it is the same tunnel.
    /// </summary>
    internal static string Differences(Link link, TunnelConfig t)
    {
        var info = link.InfoData;
        var diffs = new List<string>();
        void Check(string what, ushort type, ReadOnlySpan<byte> want)
        {
            var a = info.FirstOrDefault(x => x.Type == type);
            if (a.Value.IsEmpty && a.Type == 0)
                diffs.Add($"{what} unset, want {Hex(want)}");
            else if (!a.Value.Span.SequenceEqual(want))
                diffs.Add($"{what} {Hex(a.Value.Span)}, want {Hex(want)}");
        }
        bool v6 = t.Remote.AddressFamily == AddressFamily.InterNetworkV6;
        switch (t.Kind)
        {
            case TunnelKind.Vxlan:
                Check("vni", 1 /* IFLA_VXLAN_ID */, BitConverter.GetBytes(t.Vni!.Value));
                Check("remote", v6 ? (ushort)16 : (ushort)2 /* IFLA_VXLAN_GROUP(6) */, t.Remote.GetAddressBytes());
                Check("local", v6 ? (ushort)17 : (ushort)4 /* IFLA_VXLAN_LOCAL(6) */, t.Local.GetAddressBytes());
                Check("port", 15 /* IFLA_VXLAN_PORT, network order */, [(byte)(t.Port >> 8), (byte)t.Port]);
                break;
            case TunnelKind.Gre:
                Check("local", 6 /* IFLA_GRE_LOCAL */, t.Local.GetAddressBytes());
                Check("remote", 7 /* IFLA_GRE_REMOTE */, t.Remote.GetAddressBytes());
                if (t.Key is uint key)
                    Check("key", 4 /* IFLA_GRE_IKEY, network order */, [(byte)(key >> 24), (byte)(key >> 16), (byte)(key >> 8), (byte)key]);
                break;
            default:
                Check("local", 2 /* IFLA_IPTUN_LOCAL */, t.Local.GetAddressBytes());
                Check("remote", 3 /* IFLA_IPTUN_REMOTE */, t.Remote.GetAddressBytes());
                break;
        }
        return string.Join(", ", diffs);
    }

    private static string Hex(ReadOnlySpan<byte> b) => Convert.ToHexString(b);
}
