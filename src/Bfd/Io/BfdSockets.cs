#pragma warning disable CS8981 // C names kept as in the headers
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Netcore.Interop;
using static Netcore.Interop.LinuxConstants;

namespace Netcore.Bfd.Io;

/// <summary>struct in_pktinfo (netinet/in.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal struct in_pktinfo
{
    public int ipi_ifindex;
    public uint ipi_spec_dst;
    public uint ipi_addr;
}

/// <summary>struct in6_pktinfo (netinet/in.h).</summary>
[StructLayout(LayoutKind.Sequential)]
internal unsafe struct in6_pktinfo
{
    public fixed byte ipi6_addr[16];
    public int ipi6_ifindex;
}

/// <summary>The UDP sockets of RFC 5881 (single hop) and RFC 5883 (multihop).</summary>
internal static unsafe class BfdSockets
{
    /// <summary>RFC 5881 4: single-hop Control packets go to UDP port 3784.</summary>
    public const ushort SingleHopPort = 3784;

    /// <summary>RFC 5883 5: multihop Control packets go to UDP port 4784.</summary>
    public const ushort MultihopPort = 4784;

    /// <summary>RFC 5881 4: "The source port MUST be in the range 49152 through 65535."</summary>
    public const int SourcePortMin = 49152, SourcePortMax = 65535;

    /// <summary>RFC 5881 5 / RFC 5883: packets are sent with TTL / Hop Limit 255.</summary>
    public const int SendTtl = 255;

    private const int IPV6_V6ONLY = 26;

    /// <summary>
    /// A non-blocking receive socket on <paramref name="port"/> that delivers the TTL / hop limit
    /// (IP_RECVTTL / IPV6_RECVHOPLIMIT), the arrival interface and destination (IP_PKTINFO /
    /// IPV6_RECVPKTINFO) and the kernel receive time (SO_TIMESTAMPNS) with every datagram.
    /// </summary>
    public static SafeFd OpenReceiver(AddressFamily family, ushort port, int receiveBuffer)
    {
        int af = family == AddressFamily.InterNetworkV6 ? AF_INET6 : AF_INET;
        SafeFd fd = SafeFd.FromResult(Libc.socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP), $"socket({family}, SOCK_DGRAM)");
        try
        {
            SetInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
            SetInt(fd, SOL_SOCKET, SO_TIMESTAMPNS, 1, "SO_TIMESTAMPNS");
            if (receiveBuffer > 0 && Libc.setsockopt(fd.Fd, SOL_SOCKET, SO_RCVBUFFORCE, &receiveBuffer, sizeof(int)) != 0)
                SetInt(fd, SOL_SOCKET, SO_RCVBUF, receiveBuffer, "SO_RCVBUF");
            if (af == AF_INET6)
            {
                SetInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
                SetInt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1, "IPV6_RECVHOPLIMIT");
                SetInt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO");
                sockaddr_in6 sa = default;
                sa.sin6_family = AF_INET6;
                sa.sin6_port = (ushort)IPAddress.HostToNetworkOrder((short)port);
                SysCallException.Check(Libc.bind(fd.Fd, &sa, (uint)sizeof(sockaddr_in6)), $"bind([::]:{port})");
            }
            else
            {
                SetInt(fd, IPPROTO_IP, IP_RECVTTL, 1, "IP_RECVTTL");
                SetInt(fd, IPPROTO_IP, IP_PKTINFO, 1, "IP_PKTINFO");
                sockaddr_in sa = default;
                sa.sin_family = AF_INET;
                sa.sin_port = (ushort)IPAddress.HostToNetworkOrder((short)port);
                SysCallException.Check(Libc.bind(fd.Fd, &sa, (uint)sizeof(sockaddr_in)), $"bind(0.0.0.0:{port})");
            }
            return fd;
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>
    /// A transmit socket for one session: TTL / hop limit 255, bound to <paramref name="device"/>
    /// (SO_BINDTODEVICE) when given, bound to a source port of its own in 49152-65535 (RFC 5881 4),
    /// connected to the peer's port 3784 or 4784.
    /// </summary>
    public static SafeFd OpenTransmitter(IPAddress peer, IPAddress? local, string? device, int ifindex, ushort destinationPort, ref int nextPort, out ushort sourcePort)
    {
        bool v6 = peer.AddressFamily == AddressFamily.InterNetworkV6;
        int af = v6 ? AF_INET6 : AF_INET;
        SafeFd fd = SafeFd.FromResult(Libc.socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP), $"socket({peer.AddressFamily}, SOCK_DGRAM)");
        try
        {
            if (device is not null)
            {
                byte[] name = System.Text.Encoding.ASCII.GetBytes(device + "\0");
                fixed (byte* n = name)
                    SysCallException.Check(Libc.setsockopt(fd.Fd, SOL_SOCKET, SO_BINDTODEVICE, n, (uint)name.Length), $"setsockopt(SO_BINDTODEVICE, {device})");
            }
            if (v6)
                SetInt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, SendTtl, "IPV6_UNICAST_HOPS");
            else
                SetInt(fd, IPPROTO_IP, IP_TTL, SendTtl, "IP_TTL");

            // RFC 5881 4: a source port in 49152-65535, the same for the whole session and (here)
            // unique per session: try ports in turn until bind succeeds.
            int span = SourcePortMax - SourcePortMin + 1;
            for (int attempt = 0; ; attempt++)
            {
                if (attempt >= span)
                    SysCallException.Throw("bind(BFD source port 49152-65535)", Errno.EADDRINUSE);
                int port = SourcePortMin + (int)((uint)(nextPort - SourcePortMin) % (uint)span);
                nextPort = port + 1;
                int rc = v6 ? BindV6(fd, local, port, ifindex) : BindV4(fd, local, port);
                if (rc == 0)
                {
                    sourcePort = (ushort)port;
                    break;
                }
                Errno e = ErrnoExtensions.Last();
                if (e != Errno.EADDRINUSE)
                    SysCallException.Throw($"bind({local}:{port})", e);
            }
            int crc;
            if (v6)
            {
                sockaddr_in6 sa = ToSockaddr6(peer, destinationPort, ifindex);
                crc = Libc.connect(fd.Fd, &sa, (uint)sizeof(sockaddr_in6));
            }
            else
            {
                sockaddr_in sa = ToSockaddr4(peer, destinationPort);
                crc = Libc.connect(fd.Fd, &sa, (uint)sizeof(sockaddr_in));
            }
            SysCallException.Check(crc, $"connect({peer}:{destinationPort})");
            return fd;
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    public static int InterfaceIndex(string device)
    {
        uint idx = Libc.if_nametoindex(device);
        if (idx == 0)
            SysCallException.ThrowLast($"if_nametoindex({device})");
        return (int)idx;
    }

    private static int BindV4(SafeFd fd, IPAddress? local, int port)
    {
        sockaddr_in sa = ToSockaddr4(local ?? IPAddress.Any, (ushort)port);
        return Libc.bind(fd.Fd, &sa, (uint)sizeof(sockaddr_in));
    }

    private static int BindV6(SafeFd fd, IPAddress? local, int port, int ifindex)
    {
        sockaddr_in6 sa = ToSockaddr6(local ?? IPAddress.IPv6Any, (ushort)port, ifindex);
        return Libc.bind(fd.Fd, &sa, (uint)sizeof(sockaddr_in6));
    }

    private static sockaddr_in ToSockaddr4(IPAddress a, ushort port)
    {
        sockaddr_in sa = default;
        sa.sin_family = AF_INET;
        sa.sin_port = (ushort)IPAddress.HostToNetworkOrder((short)port);
        Span<byte> b = stackalloc byte[4];
        a.TryWriteBytes(b, out _);
        sa.sin_addr = MemoryMarshal.Read<uint>(b);
        return sa;
    }

    private static sockaddr_in6 ToSockaddr6(IPAddress a, ushort port, int ifindex)
    {
        sockaddr_in6 sa = default;
        sa.sin6_family = AF_INET6;
        sa.sin6_port = (ushort)IPAddress.HostToNetworkOrder((short)port);
        a.TryWriteBytes(new Span<byte>(sa.sin6_addr, 16), out _);
        sa.sin6_scope_id = a.IsIPv6LinkLocal ? (uint)ifindex : 0;
        return sa;
    }

    private static void SetInt(SafeFd fd, int level, int name, int value, string what)
    {
        if (Libc.setsockopt(fd.Fd, level, name, &value, sizeof(int)) != 0)
            SysCallException.ThrowLast($"setsockopt({what})");
    }
}
