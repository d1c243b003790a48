using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace Netcore.Netlink.Core;

/// <summary>
/// Builds one or more netlink messages back to back in a pooled buffer, ready for a single
/// sendmsg (pipelining). Messages and attributes are 4-byte aligned (NLMSG_ALIGN, NLA_ALIGN in
/// linux/netlink.h); padding bytes are zero.
/// </summary>
internal sealed class NetlinkWriter : IDisposable
{
    private byte[] _buffer;
    private int _length;
    private int _messageStart = -1;

    public NetlinkWriter(int initialCapacity = 1024) => _buffer = ArrayPool<byte>.Shared.Rent(initialCapacity);

    /// <summary>Bytes written so far (complete messages plus the one being built).</summary>
    public int Length => _length;

    /// <summary>The complete messages.</summary>
    public ReadOnlySpan<byte> WrittenSpan => _buffer.AsSpan(0, _length);

    /// <summary>The complete messages as memory (for tests and captures).</summary>
    public ReadOnlyMemory<byte> WrittenMemory => _buffer.AsMemory(0, _length);

    /// <summary>Number of messages ended since the last reset.</summary>
    public int MessageCount { get; private set; }

    /// <summary>Forgets everything written; keeps the buffer.</summary>
    public void Reset()
    {
        _length = 0;
        _messageStart = -1;
        MessageCount = 0;
    }

    /// <summary>Starts a message: writes an nlmsghdr whose length is filled in by <see cref="EndMessage"/>.</summary>
    public void BeginMessage(ushort type, ushort flags, uint seq, uint pid = 0)
    {
        if (_messageStart >= 0)
            throw new InvalidOperationException("previous netlink message not ended");
        _messageStart = _length;
        Span<byte> h = Reserve(Nl.NLMSG_HDRLEN);
        BinaryPrimitives.WriteUInt16LittleEndian(h[4..], type);
        BinaryPrimitives.WriteUInt16LittleEndian(h[6..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], seq);
        BinaryPrimitives.WriteUInt32LittleEndian(h[12..], pid);
    }

    /// <summary>Ends the current message by writing its nlmsg_len.</summary>
    public void EndMessage()
    {
        if (_messageStart < 0)
            throw new InvalidOperationException("no netlink message begun");
        MemoryMarshal.Write(_buffer.AsSpan(_messageStart), (uint)(_length - _messageStart));
        _messageStart = -1;
        MessageCount++;
    }

    /// <summary>ORs <paramref name="flags"/> into nlmsg_flags of the message starting at <paramref name="messageOffset"/>.</summary>
    public void OrFlags(int messageOffset, ushort flags)
    {
        Span<byte> f = _buffer.AsSpan(messageOffset + 6, 2);
        BinaryPrimitives.WriteUInt16LittleEndian(f, (ushort)(BinaryPrimitives.ReadUInt16LittleEndian(f) | flags));
    }

    /// <summary>Overwrites a 16-bit host-order value at <paramref name="offset"/> (lengths written after their payload).</summary>
    public void SetU16(int offset, ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(offset), value);

    /// <summary>Drops the message being built (used when a batch chunk is full).</summary>
    public void AbandonMessage()
    {
        if (_messageStart >= 0)
        {
            _length = _messageStart;
            _messageStart = -1;
        }
    }

    /// <summary>Writes a fixed family header (ifinfomsg, rtmsg, ...) in host byte order.</summary>
    public void Struct<T>(in T value) where T : unmanaged
    {
        Span<byte> s = Reserve(Unsafe.SizeOf<T>());
        MemoryMarshal.Write(s, in value);
    }

    /// <summary>Writes a struct as the payload of attribute <paramref name="type"/> (IFA_CACHEINFO, ...).</summary>
    public void Struct<T>(in T value, ushort type) where T : unmanaged => MemoryMarshal.Write(Attr(type, Unsafe.SizeOf<T>()), in value);

    /// <summary>Writes a family header padded to <paramref name="paddedSize"/> bytes (rtgenmsg is 1 byte, padded to 4).</summary>
    public void StructPadded<T>(in T value, int paddedSize) where T : unmanaged
    {
        Span<byte> s = Reserve(Math.Max(paddedSize, Unsafe.SizeOf<T>()));
        MemoryMarshal.Write(s, in value);
    }

    /// <summary>Starts a nested attribute (NLA_F_NESTED set); pass the result to <see cref="EndNested"/>.</summary>
    public int BeginNested(ushort type)
    {
        int start = _length;
        Span<byte> h = Reserve(Nl.NLA_HDRLEN);
        BinaryPrimitives.WriteUInt16LittleEndian(h[2..], (ushort)(type | Nl.NLA_F_NESTED));
        return start;
    }

    /// <summary>Starts an attribute whose payload is written by hand (e.g. RTA_MULTIPATH); end it with <see cref="EndNested"/>.</summary>
    public int BeginRaw(ushort type)
    {
        int start = _length;
        Span<byte> h = Reserve(Nl.NLA_HDRLEN);
        BinaryPrimitives.WriteUInt16LittleEndian(h[2..], type);
        return start;
    }

    /// <summary>Ends a nested or raw attribute by writing its nla_len.</summary>
    public void EndNested(int start)
    {
        int len = _length - start;
        if (len > ushort.MaxValue)
            throw new NetlinkFormatException($"netlink attribute of {len} bytes exceeds the 16-bit nla_len");
        BinaryPrimitives.WriteUInt16LittleEndian(_buffer.AsSpan(start), (ushort)len);
    }

    /// <summary>Reserves <paramref name="size"/> zeroed bytes (padded to 4) and returns them.</summary>
    public Span<byte> Reserve(int size)
    {
        int padded = Nl.Align(size);
        Ensure(padded);
        Span<byte> s = _buffer.AsSpan(_length, padded);
        s.Clear();
        _length += padded;
        return s[..size];
    }

    /// <summary>Writes an attribute with an arbitrary payload.</summary>
    public Span<byte> Attr(ushort type, int payloadLength)
    {
        int total = Nl.NLA_HDRLEN + payloadLength;
        if (total > ushort.MaxValue)
            throw new NetlinkFormatException($"netlink attribute of {total} bytes exceeds the 16-bit nla_len");
        Span<byte> s = Reserve(total);
        BinaryPrimitives.WriteUInt16LittleEndian(s, (ushort)total);
        BinaryPrimitives.WriteUInt16LittleEndian(s[2..], type);
        return s[Nl.NLA_HDRLEN..];
    }

    public void Bytes(ushort type, ReadOnlySpan<byte> value) => value.CopyTo(Attr(type, value.Length));

    public void Flag(ushort type) => Attr(type, 0);

    public void U8(ushort type, byte value) => Attr(type, 1)[0] = value;

    public void U16(ushort type, ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(Attr(type, 2), value);

    public void U32(ushort type, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(Attr(type, 4), value);

    public void S32(ushort type, int value) => BinaryPrimitives.WriteInt32LittleEndian(Attr(type, 4), value);

    public void U64(ushort type, ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(Attr(type, 8), value);

    /// <summary>A 16-bit value in network byte order (ports, VLAN protocols).</summary>
    public void Be16(ushort type, ushort value) => BinaryPrimitives.WriteUInt16BigEndian(Attr(type, 2), value);

    /// <summary>A 32-bit value in network byte order (GRE keys).</summary>
    public void Be32(ushort type, uint value) => BinaryPrimitives.WriteUInt32BigEndian(Attr(type, 4), value);

    /// <summary>A NUL-terminated string (NLA_NUL_STRING / NLA_STRING both accept it).</summary>
    public void String(ushort type, string value)
    {
        int n = Encoding.UTF8.GetByteCount(value);
        Span<byte> s = Attr(type, n + 1);
        Encoding.UTF8.GetBytes(value, s);
        s[n] = 0;
    }

    /// <summary>An IPv4 (4 bytes) or IPv6 (16 bytes) address in network byte order.</summary>
    public void Address(ushort type, IPAddress address)
    {
        int len = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork ? 4 : 16;
        if (!address.TryWriteBytes(Attr(type, len), out _))
            throw new ArgumentException("cannot encode address " + address, nameof(address));
    }

    private void Ensure(int extra)
    {
        if (_length + extra <= _buffer.Length)
            return;
        byte[] bigger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, _length + extra));
        _buffer.AsSpan(0, _length).CopyTo(bigger);
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = bigger;
    }

    public void Dispose()
    {
        byte[] b = _buffer;
        _buffer = [];
        _length = 0;
        if (b.Length > 0)
            ArrayPool<byte>.Shared.Return(b);
    }
}
