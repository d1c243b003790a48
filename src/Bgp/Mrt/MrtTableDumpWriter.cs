using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Netcore.Bgp.Mrt;

namespace Netcore.Bgp;

/// <summary>
/// Writes routes as an MRT TABLE_DUMP_V2 file (RFC 6396 4.3): a PEER_INDEX_TABLE with every peer the
/// routes name, then one RIB_IPV4_UNICAST / RIB_IPV6_UNICAST record per prefix in prefix order, with
/// one RIB entry per route. A prefix whose routes carry ADD-PATH identifiers is written with the
/// RFC 8050 _ADDPATH subtype. Attributes use 4-octet AS numbers and the abbreviated MP_REACH_NLRI
/// of RFC 6396 4.3.4 (or the full form, see <see cref="MrtDumpOptions.FullMpReach"/>).
/// </summary>
public static class MrtTableDumpWriter
{
    /// <summary>Writes a dump of <paramref name="routes"/> to <paramref name="stream"/>.</summary>
    /// <exception cref="ArgumentException">More than 65535 peers, or more than 65535 routes for one prefix.</exception>
    public static void Write(Stream stream, IEnumerable<MrtRoute> routes, MrtDumpOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        foreach (var chunk in Records(routes, options ?? new MrtDumpOptions()))
            stream.Write(chunk.Span);
        stream.Flush();
    }

    /// <summary>Writes a dump of <paramref name="routes"/> to <paramref name="stream"/>, asynchronously.</summary>
    public static async Task WriteAsync(Stream stream, IEnumerable<MrtRoute> routes, MrtDumpOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        foreach (var chunk in Records(routes, options ?? new MrtDumpOptions()))
            await stream.WriteAsync(chunk, cancellationToken).ConfigureAwait(false);
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Writes a dump to a new file (gzip-compressed when the name ends in ".gz").</summary>
    public static void WriteFile(string path, IEnumerable<MrtRoute> routes, MrtDumpOptions? options = null)
    {
        using var fs = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
        if (path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase))
        {
            using var gz = new System.IO.Compression.GZipStream(fs, System.IO.Compression.CompressionLevel.Fastest);
            Write(gz, routes, options);
        }
        else
        {
            Write(fs, routes, options);
        }
    }

    /// <summary>
    /// Dumps the speaker's RIB (every accepted path, or only the best ones) as TABLE_DUMP_V2: each path
    /// under the peer it was learned from; routes we originate appear under a peer with address
    /// 0.0.0.0, our router id and our AS. The originated time of every entry is the dump time (the
    /// RIB does not keep arrival times).
    /// </summary>
    /// <exception cref="InvalidOperationException">The speaker's RIB is disabled.</exception>
    public static async Task DumpRibAsync(Stream stream, BgpSpeaker speaker, bool bestOnly = false, MrtDumpOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(speaker);
        var routes = await speaker.GetRoutesAsync(bestOnly, cancellationToken).ConfigureAwait(false);
        options ??= new MrtDumpOptions { CollectorId = speaker.Options.RouterId };
        var now = options.Timestamp ?? DateTimeOffset.UtcNow;
        options = options with { Timestamp = now };
        var peers = new Dictionary<(IPAddress?, uint, IPAddress), MrtPeer>();
        var list = new List<MrtRoute>(routes.Count);
        foreach (var r in routes)
        {
            var key = (r.PeerAddress, r.PeerAs, r.PeerRouterId);
            if (!peers.TryGetValue(key, out var peer))
                peers.Add(key, peer = new MrtPeer(r.PeerRouterId, r.PeerAddress ?? IPAddress.Any, r.PeerAs));
            list.Add(new MrtRoute(r.Prefix, peer, now, r.Attributes, r.PathId));
        }
        await WriteAsync(stream, list, options, cancellationToken).ConfigureAwait(false);
    }

    private static IEnumerable<ReadOnlyMemory<byte>> Records(IEnumerable<MrtRoute> routes, MrtDumpOptions options)
    {
        ArgumentNullException.ThrowIfNull(routes);
        uint ts = (uint)(options.Timestamp ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds();
        var peerIndex = new Dictionary<MrtPeer, int>();
        var peers = new List<MrtPeer>();
        var byPrefix = new SortedDictionary<BgpPrefix, List<MrtRoute>>();
        foreach (var r in routes)
        {
            ArgumentNullException.ThrowIfNull(r.Peer, nameof(routes));
            ArgumentNullException.ThrowIfNull(r.Attributes, nameof(routes));
            if (!peerIndex.ContainsKey(r.Peer))
            {
                peerIndex.Add(r.Peer, peers.Count);
                peers.Add(r.Peer);
            }
            if (!byPrefix.TryGetValue(r.Prefix, out var list))
                byPrefix.Add(r.Prefix, list = []);
            list.Add(r);
        }
        // RFC 6396 4.3.1: the peer index is a 2-octet field.
        if (peers.Count > ushort.MaxValue)
            throw new ArgumentException($"{peers.Count} peers: a peer index table holds at most 65535", nameof(routes));

        var buf = new ArrayBufferWriterLite(1 << 16);
        WritePeerIndex(buf, ts, options, peers);
        yield return buf.Written;

        uint seq = 0;
        foreach (var (prefix, list) in byPrefix)
        {
            // RFC 6396 4.3.2: the entry count is a 2-octet field.
            if (list.Count > ushort.MaxValue)
                throw new ArgumentException($"{list.Count} routes for {prefix}: a RIB record holds at most 65535", nameof(routes));
            bool addPath = list.Exists(r => r.PathId != 0);
            bool v6 = prefix.IsIPv6;
            ushort subtype = (v6, addPath) switch
            {
                (false, false) => MrtCode.RibIPv4Unicast,
                (true, false) => MrtCode.RibIPv6Unicast,
                (false, true) => MrtCode.RibIPv4UnicastAddPath,
                _ => MrtCode.RibIPv6UnicastAddPath,
            };
            buf.Reset();
            int h = buf.Reserve(MrtCode.HeaderSize);
            var s = buf.Take(4 + 1 + prefix.WireBytes + 2);
            BinaryPrimitives.WriteUInt32BigEndian(s, seq++);
            s[4] = (byte)prefix.Length;
            prefix.WriteWire(s[5..]);
            BinaryPrimitives.WriteUInt16BigEndian(s[(5 + prefix.WireBytes)..], (ushort)list.Count);
            foreach (var r in list)
            {
                int alen = MrtAttributeCodec.Measure(r.Attributes, prefix, options.FullMpReach);
                if (alen > ushort.MaxValue)
                    throw new ArgumentException($"attributes of {prefix} take {alen} octets, more than an entry holds", nameof(routes));
                int fixedLen = addPath ? 12 : 8;
                var e = buf.Take(fixedLen + alen);
                // RFC 6396 4.3.4 / RFC 8050 4: peer index, originated time, [path id], attribute length, attributes.
                BinaryPrimitives.WriteUInt16BigEndian(e, (ushort)peerIndex[r.Peer]);
                BinaryPrimitives.WriteUInt32BigEndian(e[2..], (uint)Math.Clamp(r.Originated.ToUnixTimeSeconds(), 0, uint.MaxValue));
                if (addPath)
                    BinaryPrimitives.WriteUInt32BigEndian(e[6..], r.PathId);
                BinaryPrimitives.WriteUInt16BigEndian(e[(fixedLen - 2)..], (ushort)alen);
                MrtAttributeCodec.Write(e[fixedLen..], r.Attributes, prefix, options.FullMpReach);
            }
            WriteHeader(buf.At(h, MrtCode.HeaderSize), ts, subtype, buf.Length - MrtCode.HeaderSize);
            yield return buf.Written;
        }
    }

    private static void WritePeerIndex(ArrayBufferWriterLite buf, uint ts, MrtDumpOptions options, List<MrtPeer> peers)
    {
        buf.Reset();
        int h = buf.Reserve(MrtCode.HeaderSize);
        byte[] view = Encoding.UTF8.GetBytes(options.ViewName ?? "");
        if (view.Length > ushort.MaxValue)
            throw new ArgumentException("view name too long", nameof(options));
        var s = buf.Take(4 + 2 + view.Length + 2);
        WriteV4(options.CollectorId, s, "collector id");
        BinaryPrimitives.WriteUInt16BigEndian(s[4..], (ushort)view.Length);
        view.CopyTo(s[6..]);
        BinaryPrimitives.WriteUInt16BigEndian(s[(6 + view.Length)..], (ushort)peers.Count);
        foreach (var p in peers)
        {
            // RFC 6396 4.3.1: peer type, BGP ID, address (4 or 16), AS (we always write 4 octets).
            bool v6 = p.Address.AddressFamily == AddressFamily.InterNetworkV6;
            var e = buf.Take(1 + 4 + (v6 ? 16 : 4) + 4);
            e[0] = (byte)(MrtCode.PeerTypeAs4 | (v6 ? MrtCode.PeerTypeIPv6 : 0));
            WriteV4(p.BgpId, e[1..], "peer BGP id");
            p.Address.TryWriteBytes(e[5..], out _);
            BinaryPrimitives.WriteUInt32BigEndian(e[(5 + (v6 ? 16 : 4))..], p.Asn);
        }
        WriteHeader(buf.At(h, MrtCode.HeaderSize), ts, MrtCode.PeerIndexTable, buf.Length - MrtCode.HeaderSize);
    }

    private static void WriteV4(IPAddress a, Span<byte> d, string what)
    {
        if (a.AddressFamily != AddressFamily.InterNetwork)
            throw new ArgumentException($"the {what} must be an IPv4 address (a BGP identifier)");
        a.TryWriteBytes(d, out _);
    }

    private static void WriteHeader(Span<byte> h, uint ts, ushort subtype, int length)
    {
        // RFC 6396 2: timestamp, type, subtype, length of the message excluding the header.
        BinaryPrimitives.WriteUInt32BigEndian(h, ts);
        BinaryPrimitives.WriteUInt16BigEndian(h[4..], MrtCode.TableDumpV2);
        BinaryPrimitives.WriteUInt16BigEndian(h[6..], subtype);
        BinaryPrimitives.WriteUInt32BigEndian(h[8..], (uint)length);
    }

    /// <summary>A reusable growable byte buffer.</summary>
    private sealed class ArrayBufferWriterLite(int capacity)
    {
        private byte[] _data = new byte[capacity];

        public int Length { get; private set; }

        public ReadOnlyMemory<byte> Written => _data.AsMemory(0, Length);

        public void Reset() => Length = 0;

        public int Reserve(int n)
        {
            int at = Length;
            Take(n);
            return at;
        }

        public Span<byte> Take(int n)
        {
            if (Length + n > _data.Length)
                Array.Resize(ref _data, Math.Max(_data.Length * 2, Length + n));
            var s = _data.AsSpan(Length, n);
            s.Clear();
            Length += n;
            return s;
        }

        public Span<byte> At(int offset, int n) => _data.AsSpan(offset, n);
    }
}
