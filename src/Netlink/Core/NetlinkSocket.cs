using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using Netcore.Interop;
using static Netcore.Interop.LinuxConstants;

namespace Netcore.Netlink.Core;

/// <summary>Turns one reply message into a value; returns false to skip it.</summary>
internal delegate bool MessageParser<T>(in NetlinkMessage message, out T value);

/// <summary>
/// One AF_NETLINK socket. Every socket turns on NETLINK_EXT_ACK (error text and offset),
/// NETLINK_CAP_ACK (acks echo only the request header) and NETLINK_GET_STRICT_CHK (kernel-side
/// dump filtering, strict header checks). Receives size each datagram with MSG_PEEK|MSG_TRUNC
/// and grow a pooled buffer, so a large message is never truncated. Not thread-safe: the
/// client hands a socket to one operation at a time.
/// </summary>
internal sealed unsafe class NetlinkSocket : IDisposable
{
    private const int InitialReceiveSize = 64 * 1024;
    private readonly SafeFd _fd;
    private byte[] _rx;
    private uint _seq;

    private NetlinkSocket(SafeFd fd, int protocol, uint portId)
    {
        _fd = fd;
        Protocol = protocol;
        PortId = portId;
        _rx = ArrayPool<byte>.Shared.Rent(InitialReceiveSize);
        _seq = (uint)Environment.TickCount;
    }

    public int Protocol { get; }

    /// <summary>The port id the kernel assigned at bind.</summary>
    public uint PortId { get; }

    /// <summary>Set when an operation was left half-way (unread replies may be queued): the socket must not be reused.</summary>
    public bool Broken { get; set; }

    /// <summary>The descriptor, for poll(2).</summary>
    public SafeFd Handle => _fd;

    /// <summary>Creates and binds a socket in the calling thread's network namespace.</summary>
    public static NetlinkSocket Create(int protocol, int receiveBuffer = 0, bool nonBlocking = false)
    {
        int flags = SOCK_RAW | SOCK_CLOEXEC | (nonBlocking ? SOCK_NONBLOCK : 0);
        SafeFd fd = SafeFd.FromResult(Libc.socket(AF_NETLINK, flags, protocol), "socket(AF_NETLINK)");
        try
        {
            SetInt(fd, SOL_NETLINK, Nl.NETLINK_EXT_ACK, 1, "setsockopt(NETLINK_EXT_ACK)");
            SetInt(fd, SOL_NETLINK, Nl.NETLINK_CAP_ACK, 1, "setsockopt(NETLINK_CAP_ACK)");
            // linux/netlink.h: NETLINK_GET_STRICT_CHK (5.0+); older kernels reject it, which only disables dump filters.
            int one = 1;
            _ = Libc.setsockopt(fd.Fd, SOL_NETLINK, Nl.NETLINK_GET_STRICT_CHK, &one, sizeof(int));
            if (receiveBuffer > 0)
                SetReceiveBuffer(fd, receiveBuffer);
            var sa = new sockaddr_nl { nl_family = AF_NETLINK };
            SysCallException.Check(Libc.bind(fd.Fd, &sa, (uint)sizeof(sockaddr_nl)), "bind(AF_NETLINK)");
            uint len = (uint)sizeof(sockaddr_nl);
            SysCallException.Check(Libc.getsockname(fd.Fd, &sa, &len), "getsockname(AF_NETLINK)");
            return new NetlinkSocket(fd, protocol, sa.nl_pid);
        }
        catch
        {
            fd.Dispose();
            throw;
        }
    }

    /// <summary>SO_RCVBUFFORCE (root, ignores rmem_max), falling back to SO_RCVBUF.</summary>
    public static void SetReceiveBuffer(SafeFd fd, int bytes)
    {
        if (Libc.setsockopt(fd.Fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(int)) != 0)
            SetInt(fd, SOL_SOCKET, SO_RCVBUF, bytes, "setsockopt(SO_RCVBUF)");
    }

    public void SetOption(int level, int name, int value, string what) => SetInt(_fd, level, name, value, what);

    private static void SetInt(SafeFd fd, int level, int name, int value, string what) =>
        SysCallException.Check(Libc.setsockopt(fd.Fd, level, name, &value, sizeof(int)), what);

    /// <summary>The next sequence number (never 0, which the kernel uses for notifications).</summary>
    public uint NextSeq()
    {
        uint s = ++_seq;
        if (s == 0)
            s = ++_seq;
        return s;
    }

    /// <summary>Sends one datagram holding one or more messages to the kernel (port 0).</summary>
    public void Send(ReadOnlySpan<byte> messages)
    {
        var sa = new sockaddr_nl { nl_family = AF_NETLINK };
        fixed (byte* p = messages)
        {
            while (true)
            {
                nint n = Libc.sendto(_fd.Fd, p, (nuint)messages.Length, 0, &sa, (uint)sizeof(sockaddr_nl));
                if (n >= 0)
                    return;
                Errno e = ErrnoExtensions.Last();
                if (e != Errno.EINTR)
                    SysCallException.Throw("sendto(AF_NETLINK)", e);
            }
        }
    }

    /// <summary>
    /// Receives one datagram. It is first read with MSG_PEEK|MSG_TRUNC, which copies it into the
    /// pooled buffer and returns its full length: when it fitted, the datagram is then only
    /// dequeued (a zero-length read, no second copy); when it did not, the buffer is grown and the
    /// datagram read again, so a large message is never truncated. Returns an empty span for
    /// EAGAIN when <paramref name="dontWait"/>. The span is valid until the next receive.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public ReadOnlySpan<byte> Receive(bool dontWait = false)
    {
        int extra = dontWait ? MSG_DONTWAIT : 0;
        while (true)
        {
            nint n;
            fixed (byte* p = _rx)
                n = Libc.recvfrom(_fd.Fd, p, (nuint)_rx.Length, MSG_PEEK | MSG_TRUNC | extra, null, null);
            if (n < 0)
            {
                Errno e = ErrnoExtensions.Last();
                if (e == Errno.EINTR)
                    continue;
                if (e == Errno.EAGAIN && dontWait)
                    return default;
                SysCallException.Throw("recvfrom(AF_NETLINK, MSG_PEEK|MSG_TRUNC)", e);
            }
            bool copied = n <= _rx.Length;
            if (!copied)
            {
                ArrayPool<byte>.Shared.Return(_rx);
                _rx = ArrayPool<byte>.Shared.Rent((int)n);
            }
            nint got;
            // The socket has one reader, so the datagram at the head of the queue is still the
            // peeked one; reading it with length 0 and MSG_TRUNC dequeues it and returns its length.
            fixed (byte* p = _rx)
                got = copied
                    ? Libc.recvfrom(_fd.Fd, p, 0, MSG_DONTWAIT | MSG_TRUNC, null, null)
                    : Libc.recvfrom(_fd.Fd, p, (nuint)_rx.Length, MSG_DONTWAIT, null, null);
            if (got < 0)
            {
                Errno e = ErrnoExtensions.Last();
                if (e is Errno.EINTR or Errno.EAGAIN)
                    continue;
                SysCallException.Throw("recvfrom(AF_NETLINK)", e);
            }
            if (copied && got != n)
                throw new InvalidOperationException("a netlink socket was read by two readers at once (dequeued datagram differs from the peeked one)");
            return _rx.AsSpan(0, (int)(copied ? n : got));
        }
    }

    // ------------------------------------------------------------------------------------
    // Request/reply patterns. Each reads until the reply for its own sequence number is
    // complete; stale messages of earlier requests (other seq) are skipped.

    /// <summary>Sends a request built with NLM_F_ACK and waits for its ack; throws a typed error.</summary>
    public void Ack(ReadOnlySpan<byte> request, uint seq, string operation)
    {
        Send(request);
        while (true)
        {
            var reader = new NetlinkMessageReader(Receive());
            while (reader.TryRead(out NetlinkMessage m))
            {
                if (m.Seq != seq || m.PortId != PortId)
                    continue;
                if (m.Type == Nl.NLMSG_ERROR)
                {
                    ThrowIfError(m, operation);
                    return;
                }
            }
        }
    }

    /// <summary>Sends a non-dump GET and returns the single reply parsed (false when the parser skipped it).</summary>
    public bool Get<T>(ReadOnlySpan<byte> request, uint seq, string operation, MessageParser<T> parser, out T value)
    {
        Send(request);
        while (true)
        {
            var reader = new NetlinkMessageReader(Receive());
            while (reader.TryRead(out NetlinkMessage m))
            {
                if (m.Seq != seq || m.PortId != PortId)
                    continue;
                if (m.Type == Nl.NLMSG_ERROR)
                {
                    ThrowIfError(m, operation);
                    continue;
                }
                if (m.Type == Nl.NLMSG_DONE)
                {
                    value = default!;
                    return false;
                }
                return parser(m, out value);
            }
        }
    }

    /// <summary>
    /// Sends a dump request and hands each reply message to <paramref name="onMessage"/>.
    /// Returns true when the kernel flagged the dump NLM_F_DUMP_INTR (inconsistent: retry).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public bool Dump(ReadOnlySpan<byte> request, uint seq, string operation, DumpSink onMessage)
    {
        Send(request);
        bool interrupted = false;
        while (true)
        {
            var reader = new NetlinkMessageReader(Receive());
            while (reader.TryRead(out NetlinkMessage m))
            {
                if (m.Seq != seq || m.PortId != PortId)
                    continue;
                if ((m.Flags & Nl.NLM_F_DUMP_INTR) != 0)
                    interrupted = true;
                if (m.Type == Nl.NLMSG_DONE)
                {
                    ThrowIfDoneError(m, operation);
                    return interrupted;
                }
                if (m.Type == Nl.NLMSG_ERROR)
                {
                    ThrowIfError(m, operation);
                    continue;
                }
                onMessage(m);
            }
        }
    }

    /// <summary>
    /// Waits for the outcome of a pipelined batch of requests with sequence numbers
    /// <paramref name="firstSeq"/>..<paramref name="lastSeq"/>, where only the last carried
    /// NLM_F_ACK: the kernel processes the datagram in order and sends an error message for each
    /// failed request regardless of NLM_F_ACK (net/netlink/af_netlink.c netlink_rcv_skb), so when
    /// the last ack arrives every error is already queued. Errors are reported by sequence number.
    /// </summary>
    public void BatchAcks(uint firstSeq, uint lastSeq, string operation, Action<uint, NetlinkException> onError)
    {
        while (true)
        {
            var reader = new NetlinkMessageReader(Receive());
            while (reader.TryRead(out NetlinkMessage m))
            {
                if (m.Type != Nl.NLMSG_ERROR || m.PortId != PortId || unchecked(m.Seq - firstSeq) > unchecked(lastSeq - firstSeq))
                    continue;
                NetlinkException? e = ToException(m, operation);
                if (e is not null)
                    onError(m.Seq, e);
                if (m.Seq == lastSeq)
                    return;
            }
        }
    }

    /// <summary>Throws for an NLMSG_ERROR message with a non-zero error.</summary>
    public static void ThrowIfError(in NetlinkMessage m, string operation)
    {
        NetlinkException? e = ToException(m, operation);
        if (e is not null)
            throw e;
    }

    /// <summary>The error an NLMSG_ERROR message carries (with extended ack), or null for an ack.</summary>
    public static NetlinkException? ToException(in NetlinkMessage m, string operation)
    {
        ReadOnlySpan<byte> p = m.Payload;
        if (p.Length < 4)
            NetlinkFormatException.Throw("NLMSG_ERROR shorter than its error code");
        int error = BinaryPrimitives.ReadInt32LittleEndian(p);
        if (error == 0)
            return null;
        string? text = null;
        int? offset = null;
        // linux/netlink.h: the request follows (only its header when NLM_F_CAPPED), then the
        // NLMSGERR_ATTR_* TLVs when NLM_F_ACK_TLVS.
        if ((m.Flags & Nl.NLM_F_ACK_TLVS) != 0 && p.Length >= 4 + Nl.NLMSG_HDRLEN)
        {
            int echoed = (m.Flags & Nl.NLM_F_CAPPED) != 0 ? Nl.NLMSG_HDRLEN : (int)BinaryPrimitives.ReadUInt32LittleEndian(p[4..]);
            int start = 4 + Nl.Align(echoed);
            if (echoed >= Nl.NLMSG_HDRLEN && start <= p.Length)
                ReadExtAck(p[start..], ref text, ref offset);
        }
        return Map(operation, -error, text, offset);
    }

    private static void ThrowIfDoneError(in NetlinkMessage m, string operation)
    {
        ReadOnlySpan<byte> p = m.Payload;
        if (p.Length < 4)
            return;
        int error = BinaryPrimitives.ReadInt32LittleEndian(p);
        if (error >= 0)
            return;
        string? text = null;
        int? offset = null;
        if ((m.Flags & Nl.NLM_F_ACK_TLVS) != 0)
            ReadExtAck(p[4..], ref text, ref offset);
        throw Map(operation, -error, text, offset);
    }

    private static void ReadExtAck(ReadOnlySpan<byte> tlvs, ref string? text, ref int? offset)
    {
        var a = new AttributeReader(tlvs);
        while (a.TryRead(out ushort t, out ReadOnlySpan<byte> v))
        {
            if (t == Nl.NLMSGERR_ATTR_MSG)
                text = Attr.String(v);
            else if (t == Nl.NLMSGERR_ATTR_OFFS && v.Length >= 4)
                offset = (int)Attr.U32(v);
        }
    }

    private static NetlinkException Map(string operation, int errno, string? text, int? offset) =>
        new(operation, errno, text, offset);

    public void Dispose()
    {
        _fd.Dispose();
        byte[] rx = _rx;
        _rx = [];
        if (rx.Length > 0)
            ArrayPool<byte>.Shared.Return(rx);
    }
}

/// <summary>Receives each data message of a dump.</summary>
internal delegate void DumpSink(in NetlinkMessage message);
