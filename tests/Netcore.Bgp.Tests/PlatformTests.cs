using System.Net;
using System.Runtime.InteropServices;
using Netcore.Bgp.Platform;

namespace Netcore.Bgp.Tests;

/// <summary>The socket option layer checked against the real C headers.</summary>
public class PlatformTests
{
    [LinuxFact(Tools = ["gcc"])]
    public void Tcp_md5sig_layout_and_constants_match_linux_headers()
    {
        var errors = StructLayoutCheck.Compare(["linux/tcp.h", "linux/socket.h"],
        [
            new StructLayoutSpec("struct tcp_md5sig", typeof(tcp_md5sig),
                ("tcpm_addr", "tcpm_addr"), ("tcpm_flags", "tcpm_flags"), ("tcpm_prefixlen", "tcpm_prefixlen"),
                ("tcpm_keylen", "tcpm_keylen"), ("tcpm_ifindex", "tcpm_ifindex"), ("tcpm_key", "tcpm_key")),
        ]);
        Assert.Empty(errors);
        var tcp = CHeaderProbe.Evaluate(["linux/tcp.h"], ["TCP_MD5SIG", "TCP_MD5SIG_EXT", "TCP_MD5SIG_FLAG_PREFIX", "TCP_MD5SIG_MAXKEYLEN"]);
        Assert.Equal(SocketOptions.TCP_MD5SIG, tcp["TCP_MD5SIG"]);
        Assert.Equal(SocketOptions.TCP_MD5SIG_EXT, tcp["TCP_MD5SIG_EXT"]);
        Assert.Equal(SocketOptions.TCP_MD5SIG_FLAG_PREFIX, tcp["TCP_MD5SIG_FLAG_PREFIX"]);
        Assert.Equal(SocketOptions.TCP_MD5SIG_MAXKEYLEN, tcp["TCP_MD5SIG_MAXKEYLEN"]);
        var ip = CHeaderProbe.Evaluate(["netinet/in.h", "sys/socket.h"], ["IPPROTO_IP", "IPPROTO_TCP", "IPPROTO_IPV6", "IP_TTL", "IP_MINTTL", "IPV6_UNICAST_HOPS", "AF_INET", "AF_INET6"]);
        Assert.Equal(SocketOptions.IPPROTO_IP, ip["IPPROTO_IP"]);
        Assert.Equal(SocketOptions.IPPROTO_TCP, ip["IPPROTO_TCP"]);
        Assert.Equal(SocketOptions.IPPROTO_IPV6, ip["IPPROTO_IPV6"]);
        Assert.Equal(SocketOptions.IP_TTL, ip["IP_TTL"]);
        Assert.Equal(SocketOptions.IP_MINTTL, ip["IP_MINTTL"]);
        Assert.Equal(SocketOptions.IPV6_UNICAST_HOPS, ip["IPV6_UNICAST_HOPS"]);
        Assert.Equal(SocketOptions.AF_INET, ip["AF_INET"]);
        Assert.Equal(SocketOptions.AF_INET6, ip["AF_INET6"]);
        var in6 = CHeaderProbe.Evaluate(["linux/in6.h"], ["IPV6_MINHOPCOUNT"]);
        Assert.Equal(SocketOptions.IPV6_MINHOPCOUNT, in6["IPV6_MINHOPCOUNT"]);
    }

    [Fact]
    public void Md5sig_bytes_carry_the_peer_address_and_key()
    {
        byte[] v4 = SocketOptions.BuildMd5Sig(IPAddress.Parse("192.0.2.1"), "key", null, v6Socket: false);
        Assert.Equal(216, v4.Length);
        Assert.Equal(SocketOptions.AF_INET, MemoryMarshal.Read<ushort>(v4));
        Assert.Equal([192, 0, 2, 1], v4[4..8]);
        Assert.Equal(3, MemoryMarshal.Read<ushort>(v4.AsSpan(130)));
        Assert.Equal("key"u8.ToArray(), v4[136..139]);
        byte[] mapped = SocketOptions.BuildMd5Sig(IPAddress.Parse("192.0.2.1"), "key", 24, v6Socket: true);
        Assert.Equal(SocketOptions.AF_INET6, MemoryMarshal.Read<ushort>(mapped));
        Assert.Equal(Hex.Parse("00000000000000000000ffffc0000201"), mapped[8..24]);
        Assert.Equal(SocketOptions.TCP_MD5SIG_FLAG_PREFIX, mapped[128]);
        Assert.Equal(120, mapped[129]);
        Assert.Throws<ArgumentException>(() => SocketOptions.BuildMd5Sig(IPAddress.Loopback, new string('k', 81), null, false));
    }

    [LinuxFact]
    public void Ttl_security_sets_ttl_255_and_minttl()
    {
        using var s = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp);
        SocketOptions.SetTtlSecurity(s, 1);
        byte[] v = new byte[4];
        s.GetRawSocketOption(SocketOptions.IPPROTO_IP, SocketOptions.IP_MINTTL, v);
        Assert.Equal(255, BitConverter.ToInt32(v));
        s.GetRawSocketOption(SocketOptions.IPPROTO_IP, SocketOptions.IP_TTL, v);
        Assert.Equal(255, BitConverter.ToInt32(v));
    }
}
