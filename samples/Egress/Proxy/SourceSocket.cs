using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Netcore.Egress.Daemon;

namespace Netcore.Egress.Proxy;

/// <summary>
/// Outbound TCP sockets from the shared address and a port of this machine's range.
/// IP_BIND_ADDRESS_NO_PORT defers the port choice from bind() to connect(), so one port serves
/// several destinations (the kernel picks per 4-tuple); IP_LOCAL_PORT_RANGE (Linux 6.3+) limits
/// that choice to this machine's range. Without IP_LOCAL_PORT_RANGE (ENOPROTOOPT on an older
/// kernel) the socket binds an explicit port of the range instead, trying ports from a random
/// start until one is free.
/// </summary>
internal static class SourceSocket
{
    /// <summary>IPPROTO_IP / SOL_IP level (linux/in.h).</summary>
    private const int SolIp = 0;

    /// <summary>linux/in.h: <c>#define IP_BIND_ADDRESS_NO_PORT 24</c> (Linux 4.2).</summary>
    public const int IpBindAddressNoPort = 24;

    /// <summary>linux/in.h: <c>#define IP_LOCAL_PORT_RANGE 51</c> (Linux 6.3): a u32, low 16 bits the first port, high 16 the last.</summary>
    public const int IpLocalPortRange = 51;

    /// <summary>The IP_LOCAL_PORT_RANGE value of <paramref name="range"/>.</summary>
    public static uint RangeValue(PortRange range) => range.First | ((uint)range.Last << 16);

    /// <summary>
    /// A TCP socket bound to <paramref name="shared"/> (IPv4 or IPv6) whose connect() picks a port of
    /// <paramref name="range"/>. Both options are SOL_IP options on an AF_INET6 socket as well: the
    /// kernel hands SOL_IP to ip_setsockopt for a TCP or UDP IPv6 socket
    /// (net/ipv6/ipv6_sockglue.c ipv6_setsockopt), inet6_bind honours bind_address_no_port, and the
    /// port choice at connect() (__inet_hash_connect) reads the same socket range, clamped to
    /// net.ipv4.ip_local_port_range, which also governs IPv6.
    /// </summary>
    public static Socket Create(IPAddress shared, PortRange range)
    {
        ArgumentNullException.ThrowIfNull(shared);
        var s = new Socket(shared.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            Span<byte> v = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(v, 1);
            s.SetRawSocketOption(SolIp, IpBindAddressNoPort, v);
            BinaryPrimitives.WriteUInt32LittleEndian(v, RangeValue(range));
            bool ranged = true;
            try
            {
                s.SetRawSocketOption(SolIp, IpLocalPortRange, v);
            }
            catch (SocketException e) when (e.SocketErrorCode == SocketError.ProtocolOption)
            {
                ranged = false;
            }
            if (ranged)
            {
                s.Bind(new IPEndPoint(shared, 0));
                return s;
            }
            int start = Random.Shared.Next(range.Count);
            for (int i = 0; i < range.Count; i++)
            {
                int port = range.First + (start + i) % range.Count;
                try
                {
                    s.Bind(new IPEndPoint(shared, port));
                    return s;
                }
                catch (SocketException e) when (e.SocketErrorCode == SocketError.AddressAlreadyInUse)
                {
                }
            }
            throw new SocketException((int)SocketError.AddressAlreadyInUse);
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }
}
