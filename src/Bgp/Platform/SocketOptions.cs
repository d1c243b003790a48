using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Netcore.Bgp.Platform;

/// <summary>
/// struct tcp_md5sig from &lt;linux/tcp.h&gt; (checked against the header in the tests): the peer address
/// in a sockaddr_storage, flags, prefix length, key length, ifindex and the key.
/// </summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct tcp_md5sig
{
    public fixed byte tcpm_addr[128];
    public byte tcpm_flags;
    public byte tcpm_prefixlen;
    public ushort tcpm_keylen;
    public int tcpm_ifindex;
    public fixed byte tcpm_key[80];
}

/// <summary>
/// The few Linux socket options a BGP speaker needs, set through <see cref="Socket.SetRawSocketOption"/>
/// so the package has no native dependency: TCP-MD5 (RFC 2385) and TTL security (RFC 5082).
/// </summary>
internal static class SocketOptions
{
    // <netinet/in.h>, <linux/in.h>, <linux/in6.h>, <linux/tcp.h>; values checked by the tests with CHeaderProbe.
    internal const int IPPROTO_IP = 0;
    internal const int IPPROTO_TCP = 6;
    internal const int IPPROTO_IPV6 = 41;
    internal const int IP_TTL = 2;
    internal const int IP_MINTTL = 21;
    internal const int IPV6_UNICAST_HOPS = 16;
    internal const int IPV6_MINHOPCOUNT = 73;
    internal const int TCP_MD5SIG = 14;
    internal const int TCP_MD5SIG_EXT = 32;
    internal const byte TCP_MD5SIG_FLAG_PREFIX = 1;
    internal const int TCP_MD5SIG_MAXKEYLEN = 80;
    internal const ushort AF_INET = 2;
    internal const ushort AF_INET6 = 10;

    /// <summary>Throws unless the OS supports these options (Linux).</summary>
    private static void RequireLinux(string what)
    {
        if (!OperatingSystem.IsLinux())
            throw new PlatformNotSupportedException($"{what} is implemented for Linux only");
    }

    /// <summary>
    /// Builds the tcp_md5sig bytes for <paramref name="peer"/> (or a prefix of peers with TCP_MD5SIG_EXT).
    /// An empty key removes the entry. The address family must match the socket's: an IPv4 peer on an
    /// IPv6 socket is given as an IPv4-mapped address.
    /// </summary>
    internal static unsafe byte[] BuildMd5Sig(IPAddress peer, string? key, int? prefixLength, bool v6Socket)
    {
        byte[] keyBytes = System.Text.Encoding.UTF8.GetBytes(key ?? "");
        // RFC 2385 / linux/tcp.h: at most TCP_MD5SIG_MAXKEYLEN octets.
        if (keyBytes.Length > TCP_MD5SIG_MAXKEYLEN)
            throw new ArgumentException($"the TCP-MD5 key is longer than {TCP_MD5SIG_MAXKEYLEN} octets", nameof(key));
        var sig = default(tcp_md5sig);
        if (v6Socket && peer.AddressFamily == AddressFamily.InterNetwork)
            peer = peer.MapToIPv6();
        Span<byte> addr = new(sig.tcpm_addr, 128);
        if (peer.AddressFamily == AddressFamily.InterNetwork)
        {
            // struct sockaddr_in: family(2, host order) port(2) addr(4)
            ushort fam4 = AF_INET;
            MemoryMarshal.Write(addr, in fam4);
            peer.TryWriteBytes(addr[4..], out _);
        }
        else
        {
            // struct sockaddr_in6: family(2) port(2) flowinfo(4) addr(16) scope_id(4)
            ushort fam6 = AF_INET6;
            MemoryMarshal.Write(addr, in fam6);
            peer.TryWriteBytes(addr[8..], out _);
            uint scope = (uint)peer.ScopeId;
            MemoryMarshal.Write(addr[24..], in scope);
        }
        if (prefixLength is { } pl)
        {
            sig.tcpm_flags = TCP_MD5SIG_FLAG_PREFIX;
            sig.tcpm_prefixlen = (byte)(v6Socket && pl <= 32 && peer.IsIPv4MappedToIPv6 ? pl + 96 : pl);
        }
        sig.tcpm_keylen = (ushort)keyBytes.Length;
        keyBytes.CopyTo(new Span<byte>(sig.tcpm_key, 80));
        return MemoryMarshal.AsBytes(new ReadOnlySpan<tcp_md5sig>(in sig)).ToArray();
    }

    /// <summary>Sets (or with a null key, clears) the TCP-MD5 key for a peer or a prefix of peers.</summary>
    public static void SetMd5(Socket socket, IPAddress peer, string? key, int? prefixLength = null)
    {
        ArgumentNullException.ThrowIfNull(socket);
        RequireLinux("TCP-MD5 (TCP_MD5SIG)");
        byte[] sig = BuildMd5Sig(peer, key, prefixLength, socket.AddressFamily == AddressFamily.InterNetworkV6);
        socket.SetRawSocketOption(IPPROTO_TCP, prefixLength is null ? TCP_MD5SIG : TCP_MD5SIG_EXT, sig);
    }

    /// <summary>Sets the outgoing TTL / hop limit (eBGP multihop, or 255 for GTSM).</summary>
    public static void SetTtl(Socket socket, int ttl)
    {
        RequireLinux("IP_TTL");
        Span<byte> v = stackalloc byte[4];
        MemoryMarshal.Write(v, in ttl);
        if (socket.AddressFamily == AddressFamily.InterNetworkV6)
        {
            socket.SetRawSocketOption(IPPROTO_IPV6, IPV6_UNICAST_HOPS, v);
            if (!socket.DualMode) return;
        }
        socket.SetRawSocketOption(IPPROTO_IP, IP_TTL, v);
    }

    /// <summary>
    /// GTSM (RFC 5082 3): send with TTL 255 and drop segments whose TTL is below 256 - hops
    /// (IP_MINTTL / IPV6_MINHOPCOUNT).
    /// </summary>
    public static void SetTtlSecurity(Socket socket, int hops)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(hops, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(hops, 254);
        RequireLinux("TTL security (IP_MINTTL)");
        SetTtl(socket, 255);
        int min = 256 - hops;
        Span<byte> v = stackalloc byte[4];
        MemoryMarshal.Write(v, in min);
        if (socket.AddressFamily == AddressFamily.InterNetworkV6)
        {
            socket.SetRawSocketOption(IPPROTO_IPV6, IPV6_MINHOPCOUNT, v);
            if (!socket.DualMode) return;
        }
        socket.SetRawSocketOption(IPPROTO_IP, IP_MINTTL, v);
    }
}
