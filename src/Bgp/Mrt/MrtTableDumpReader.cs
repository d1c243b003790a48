using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using System.Net;
using System.Runtime.CompilerServices;
using System.Text;
using Netcore.Bgp.Mrt;

namespace Netcore.Bgp;

/// <summary>
/// Streams the routes of an MRT TABLE_DUMP_V2 file (RFC 6396 4.3, with the ADD-PATH subtypes of
/// RFC 8050): the PEER_INDEX_TABLE first, then RIB_IPV4_UNICAST / RIB_IPV6_UNICAST records (and their
/// multicast and _ADDPATH variants), one <see cref="MrtRoute"/> per RIB entry. Records of other
/// types (BGP4MP, RIB_GENERIC...) are skipped by their length. Identical attribute blocks decode to
/// one shared <see cref="BgpPathAttributes"/> instance. Malformed input raises
/// <see cref="MrtFormatException"/> and nothing else. One reader is for one thread.
/// </summary>
public sealed class MrtTableDumpReader : IDisposable
{
    private readonly Stream _stream;
    private readonly bool _leaveOpen;
    private readonly MrtAttributeCodec _codec = new();
    private readonly List<MrtRoute> _batch = [];
    private MrtPeer[]? _peers;
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(1 << 16);
    private long _offset;

    /// <summary>Reads from <paramref name="stream"/> (already decompressed; see <see cref="Open"/> for gzip files).</summary>
    public MrtTableDumpReader(Stream stream, bool leaveOpen = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        _stream = stream;
        _leaveOpen = leaveOpen;
    }

    /// <summary>Opens a file, decompressing it on the fly when it starts with the gzip magic (1f 8b).</summary>
    public static MrtTableDumpReader Open(string path)
    {
        var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16, FileOptions.SequentialScan);
        Span<byte> magic = stackalloc byte[2];
        int n = fs.ReadAtLeast(magic, 2, throwOnEndOfStream: false);
        fs.Position = 0;
        if (n == 2 && magic[0] == 0x1f && magic[1] == 0x8b)
            return new MrtTableDumpReader(new BufferedStream(new GZipStream(fs, CompressionMode.Decompress), 1 << 16));
        return new MrtTableDumpReader(fs);
    }

    /// <summary>Largest record accepted (a sanity bound against a corrupt length). Default 64 MiB.</summary>
    public int MaxRecordLength { get; init; } = 64 << 20;

    /// <summary>Skip RIB entries whose attributes are malformed (counted in <see cref="SkippedEntries"/>) instead of throwing.</summary>
    public bool SkipMalformedEntries { get; init; }

    /// <summary>The collector's BGP identifier, once the peer index table has been read.</summary>
    public IPAddress? CollectorId { get; private set; }

    /// <summary>The view name of the peer index table.</summary>
    public string? ViewName { get; private set; }

    /// <summary>The peers of the peer index table (empty before it is read).</summary>
    public IReadOnlyList<MrtPeer> Peers => _peers ?? [];

    /// <summary>The MRT timestamp of the peer index table record (the dump time).</summary>
    public DateTimeOffset? DumpTime { get; private set; }

    /// <summary>Records of other types or subtypes that were skipped.</summary>
    public long SkippedRecords { get; private set; }

    /// <summary>RIB entries skipped as malformed (with <see cref="SkipMalformedEntries"/>).</summary>
    public long SkippedEntries { get; private set; }

    /// <summary>Reads routes until the end of the stream.</summary>
    /// <exception cref="MrtFormatException">The input is malformed.</exception>
    public IEnumerable<MrtRoute> ReadRoutes()
    {
        byte[] hdr = new byte[MrtCode.HeaderSize];
        while (true)
        {
            int n;
            try
            {
                n = _stream.ReadAtLeast(hdr, hdr.Length, throwOnEndOfStream: false);
            }
            catch (InvalidDataException e)
            {
                throw new MrtFormatException("compressed input is corrupt", e);
            }
            if (n == 0)
                yield break;
            var (type, subtype, length) = ParseHeader(hdr, n);
            EnsureBuffer(length);
            try
            {
                if (_stream.ReadAtLeast(_buffer.AsSpan(0, length), length, throwOnEndOfStream: false) < length)
                    throw new MrtFormatException("record truncated", _offset);
            }
            catch (InvalidDataException e)
            {
                throw new MrtFormatException("compressed input is corrupt", e);
            }
            uint ts = BinaryPrimitives.ReadUInt32BigEndian(hdr);
            ParseRecord(ts, type, subtype, _buffer.AsSpan(0, length));
            _offset += MrtCode.HeaderSize + length;
            foreach (var r in _batch)
                yield return r;
        }
    }

    /// <summary>Reads routes until the end of the stream, asynchronously.</summary>
    /// <exception cref="MrtFormatException">The input is malformed.</exception>
    public async IAsyncEnumerable<MrtRoute> ReadRoutesAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        byte[] hdr = new byte[MrtCode.HeaderSize];
        while (true)
        {
            int n, length;
            try
            {
                n = await _stream.ReadAtLeastAsync(hdr, hdr.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
                if (n == 0)
                    yield break;
                (ushort type, ushort subtype, length) = ParseHeader(hdr, n);
                EnsureBuffer(length);
                if (await _stream.ReadAtLeastAsync(_buffer.AsMemory(0, length), length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false) < length)
                    throw new MrtFormatException("record truncated", _offset);
                ParseRecord(BinaryPrimitives.ReadUInt32BigEndian(hdr), type, subtype, _buffer.AsSpan(0, length));
            }
            catch (InvalidDataException e)
            {
                throw new MrtFormatException("compressed input is corrupt", e);
            }
            _offset += MrtCode.HeaderSize + length;
            foreach (var r in _batch)
                yield return r;
        }
    }

    /// <summary>Reads every route of a stream into a list.</summary>
    public static List<MrtRoute> ReadAll(Stream stream)
    {
        using var reader = new MrtTableDumpReader(stream, leaveOpen: true);
        return [.. reader.ReadRoutes()];
    }

    private (ushort Type, ushort Subtype, int Length) ParseHeader(ReadOnlySpan<byte> hdr, int n)
    {
        // RFC 6396 2: timestamp(4) type(2) subtype(2) length(4), the length excluding the header.
        if (n < MrtCode.HeaderSize)
            throw new MrtFormatException("MRT header truncated", _offset);
        ushort type = BinaryPrimitives.ReadUInt16BigEndian(hdr[4..]);
        ushort subtype = BinaryPrimitives.ReadUInt16BigEndian(hdr[6..]);
        uint length = BinaryPrimitives.ReadUInt32BigEndian(hdr[8..]);
        if (length > (uint)MaxRecordLength)
            throw new MrtFormatException($"record length {length} exceeds the limit {MaxRecordLength}", _offset);
        return (type, subtype, (int)length);
    }

    private void EnsureBuffer(int length)
    {
        if (_buffer.Length >= length) return;
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = ArrayPool<byte>.Shared.Rent(length);
    }

    private void ParseRecord(uint timestamp, ushort type, ushort subtype, ReadOnlySpan<byte> body)
    {
        _batch.Clear();
        if (type != MrtCode.TableDumpV2)
        {
            SkippedRecords++;
            return;
        }
        switch (subtype)
        {
            case MrtCode.PeerIndexTable:
                ParsePeerIndex(timestamp, body);
                break;
            case MrtCode.RibIPv4Unicast or MrtCode.RibIPv4Multicast:
                ParseRib(body, v6: false, addPath: false);
                break;
            case MrtCode.RibIPv6Unicast or MrtCode.RibIPv6Multicast:
                ParseRib(body, v6: true, addPath: false);
                break;
            case MrtCode.RibIPv4UnicastAddPath or MrtCode.RibIPv4MulticastAddPath:
                ParseRib(body, v6: false, addPath: true);
                break;
            case MrtCode.RibIPv6UnicastAddPath or MrtCode.RibIPv6MulticastAddPath:
                ParseRib(body, v6: true, addPath: true);
                break;
            default:
                SkippedRecords++; // RIB_GENERIC and unknown subtypes
                break;
        }
    }

    private void ParsePeerIndex(uint timestamp, ReadOnlySpan<byte> b)
    {
        // RFC 6396 4.3.1: collector BGP ID(4), view name length(2), view name, peer count(2), peer entries.
        var r = new SpanReader(b, _offset);
        var collector = new IPAddress(r.Bytes(4, "collector id"));
        int nameLen = r.U16("view name length");
        string view;
        try
        {
            view = new UTF8Encoding(false, true).GetString(r.Bytes(nameLen, "view name"));
        }
        catch (DecoderFallbackException e)
        {
            throw new MrtFormatException("view name is not UTF-8", e);
        }
        int count = r.U16("peer count");
        var peers = new MrtPeer[count];
        for (int i = 0; i < count; i++)
        {
            // RFC 6396 4.3.1: peer type(1): bit 0 = IPv6 address, bit 1 = 4-octet AS; BGP ID(4); address; AS.
            byte ptype = r.U8("peer type");
            var id = new IPAddress(r.Bytes(4, "peer BGP id"));
            var addr = new IPAddress(r.Bytes((ptype & MrtCode.PeerTypeIPv6) != 0 ? 16 : 4, "peer address"));
            uint asn = (ptype & MrtCode.PeerTypeAs4) != 0 ? r.U32("peer AS") : r.U16("peer AS");
            peers[i] = new MrtPeer(id, addr, asn);
        }
        if (!r.End)
            throw new MrtFormatException("trailing bytes after the peer entries", _offset);
        _peers = peers;
        CollectorId = collector;
        ViewName = view;
        DumpTime = DateTimeOffset.FromUnixTimeSeconds(timestamp);
    }

    private void ParseRib(ReadOnlySpan<byte> b, bool v6, bool addPath)
    {
        // RFC 6396 4.3.2: sequence number(4), prefix length(1), prefix(variable), entry count(2), entries.
        var peers = _peers ?? throw new MrtFormatException("RIB record before the PEER_INDEX_TABLE (RFC 6396 4.3.1)", _offset);
        var r = new SpanReader(b, _offset);
        r.U32("sequence number");
        int plen = r.U8("prefix length");
        if (plen > (v6 ? 128 : 32))
            throw new MrtFormatException($"prefix length {plen} too long for the family", _offset);
        var prefix = BgpPrefix.FromWire(r.Bytes((plen + 7) >> 3, "prefix"), plen, v6);
        int count = r.U16("entry count");
        for (int i = 0; i < count; i++)
        {
            // RFC 6396 4.3.4: peer index(2), originated time(4), [RFC 8050 4: path identifier(4)], attribute length(2), attributes.
            int peer = r.U16("peer index");
            uint originated = r.U32("originated time");
            uint pathId = addPath ? r.U32("path identifier") : 0;
            int alen = r.U16("attribute length");
            var block = r.Bytes(alen, "attributes");
            if (peer >= peers.Length)
                throw new MrtFormatException($"peer index {peer} not in the peer table of {peers.Length}", _offset);
            var attrs = _codec.Decode(block, out string? error);
            if (attrs is null)
            {
                if (!SkipMalformedEntries)
                    throw new MrtFormatException($"{prefix} from {peers[peer].Address}: {error}", _offset);
                SkippedEntries++;
                continue;
            }
            _batch.Add(new MrtRoute(prefix, peers[peer], DateTimeOffset.FromUnixTimeSeconds(originated), attrs, pathId));
        }
        if (!r.End)
            throw new MrtFormatException("trailing bytes after the RIB entries", _offset);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (!_leaveOpen)
            _stream.Dispose();
        var b = _buffer;
        _buffer = [];
        if (b.Length > 0)
            ArrayPool<byte>.Shared.Return(b);
    }

    /// <summary>Bounds-checked big-endian reads that fail with <see cref="MrtFormatException"/>.</summary>
    private ref struct SpanReader(ReadOnlySpan<byte> data, long offset)
    {
        private ReadOnlySpan<byte> _rest = data;

        public readonly bool End => _rest.IsEmpty;

        public ReadOnlySpan<byte> Bytes(int n, string what)
        {
            if (_rest.Length < n)
                throw new MrtFormatException($"{what} overruns the record", offset);
            var s = _rest[..n];
            _rest = _rest[n..];
            return s;
        }

        public byte U8(string what) => Bytes(1, what)[0];

        public ushort U16(string what) => BinaryPrimitives.ReadUInt16BigEndian(Bytes(2, what));

        public uint U32(string what) => BinaryPrimitives.ReadUInt32BigEndian(Bytes(4, what));
    }
}
