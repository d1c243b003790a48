using System.Buffers;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Netcore.Bgp.Messages;
using Netcore.Bgp.Rib;
using Netcore.Bgp.Session;

namespace Netcore.Bgp;

/// <summary>The peer's side of the RIB: its Adj-RIB-Out queue and the sender that packs it into UPDATEs.</summary>
public sealed partial class BgpPeer
{
    private readonly RibOut _ribOut = new();
    private readonly Dictionary<BgpPathAttributes, int> _groups4 = new(ReferenceEqualityComparer.Instance);
    private readonly Dictionary<BgpPathAttributes, int> _groups6 = new(ReferenceEqualityComparer.Instance);
    private readonly List<(BgpPathAttributes Attrs, bool V6, int Head, int Tail, int Count)> _groupKeys = [];
    private Nlri[] _items = new Nlri[256];   // announced routes, chained per group through _next
    private int[] _next = new int[256];
    private readonly List<Nlri> _withdraw4 = [], _withdraw6 = [];
    private Dictionary<(BgpPrefix Prefix, uint PathId), BgpPathAttributes?> _ribSpare = [];
    private Task _ribUp = Task.CompletedTask;
    // Export caches for the current session (the sender loop runs one flush at a time under the export lock):
    // our local address, and the AS_PATH with our AS prepended per received AS_PATH (the codec shares them).
    private BgpConnection? _exportConn;
    private IPAddress? _exportLocal;
    private readonly Dictionary<AsPath, AsPath> _prepended = new(ReferenceEqualityComparer.Instance);
    private readonly UpdatePacker _packer = new();
    private int _noNextHopWarned; // families (1 IPv4, 2 IPv6) already reported as lacking a next hop on this session
    // Our own next hop per family (index 0 IPv4, 1 IPv6) for this session and these options: SelfNextHop looks at
    // the link's addresses, so it runs once per family, not once per exported route.
    private readonly IPAddress?[] _selfNh = new IPAddress?[2], _selfLl = new IPAddress?[2];
    private BgpPeerOptions? _selfNhOptions;
    private int _selfNhDone; // families (bit 0 IPv4, bit 1 IPv6) whose _selfNh/_selfLl hold the answer
    private PrefixCountSnapshot? _prefixCounts; // written by the RIB thread only (BgpRib.PublishCounts)

    /// <summary>
    /// The RIB's prefix counts for this peer and <paramref name="family"/>: received (Adj-RIB-In before import
    /// policy), accepted, advertised (Adj-RIB-Out), stale, treated as withdraw and selected (best in the Loc-RIB). Cheap (no walk of the RIB, no allocation) and safe
    /// from any thread: the RIB keeps the counts as it works and publishes them after each batch of work (at most
    /// a few hundred queued UPDATEs or events), as one immutable snapshot per peer, so the counts one call returns are
    /// from the same moment and never torn (two calls may see two different moments). Once
    /// <see cref="BgpSpeaker.WaitForRibAsync"/> completed they include everything received before it was called.
    /// All zero when the RIB is disabled, for a family the RIB does not hold (it holds IPv4 and IPv6 unicast),
    /// and after the peer's Adj-RIB-In was flushed (session down without graceful restart, peer removed).
    /// </summary>
    public BgpPrefixCounts GetPrefixCounts(BgpFamily family)
    {
        var c = Volatile.Read(ref _prefixCounts);
        if (c is null) return default;
        return family == BgpFamily.IPv4Unicast ? c.IPv4 : family == BgpFamily.IPv6Unicast ? c.IPv6 : default;
    }

    /// <summary>RIB thread: the peer's new counts (null: all zero).</summary>
    internal void PublishPrefixCounts(PrefixCountSnapshot? counts) => Volatile.Write(ref _prefixCounts, counts);

    /// <summary>Called under the gate when a session reaches Established: the RIB starts exporting to it.</summary>
    private void RibSessionUp(BgpConnection c)
    {
        var rib = _speaker.Rib;
        if (rib is null) return;
        _ribOut.Clear();
        _ribUp = rib.PeerUpAsync(this, c.Negotiated!, _ribOut);
        _ = Task.Run(() => RibSendLoopAsync(c));
    }

    /// <summary>Called under the gate when the established session ends.</summary>
    private void RibSessionDown() => _speaker.Rib?.PeerDown(this);

    /// <summary>
    /// Settings changed without a new session: export changes are applied at once (a soft reset out:
    /// the whole export to this peer is recomputed and the difference sent); an import policy change
    /// re-runs the policy on the kept pre-policy routes, or asks the peer for its routes again
    /// (ROUTE-REFRESH, RFC 2918) when they are not kept.
    /// </summary>
    private void RibOptionsChanged(BgpPeerOptions old, BgpPeerOptions now)
    {
        var rib = _speaker.Rib;
        if (rib is null) return;
        bool export = !ReferenceEquals(old.ExportPolicy, now.ExportPolicy) || old.RouteReflectorClient != now.RouteReflectorClient
            || old.NextHopSelf != now.NextHopSelf || old.AddPathSendCount != now.AddPathSendCount
            || old.LinkLocalNextHop != now.LinkLocalNextHop;
        bool import = !ReferenceEquals(old.ImportPolicy, now.ImportPolicy) || !Equals(old.MaxPrefixes, now.MaxPrefixes);
        if (!export && !import) return;
        rib.OptionsChanged(this, reExport: export, reImport: import);
        if (import && !rib.Options.KeepPrePolicy && _established is { } c && c.Negotiated is { } n)
        {
            foreach (var f in n.Families)
                _ = RequestRouteRefreshAsync(f);
        }
    }

    /// <summary>
    /// Part of the initial dump (before End-of-RIB) and of a route refresh (before EoRR): sends what the RIB
    /// exports to this peer. Called with the export lock held.
    /// </summary>
    private async Task RibDumpAsync(BgpConnection c, BgpFamily? refresh)
    {
        var rib = _speaker.Rib;
        if (rib is null) return;
        if (refresh is { } f) await rib.RefreshAsync(this, f).ConfigureAwait(false);
        else await _ribUp.ConfigureAwait(false);
        await FlushRibAsync(c, _life.Token).ConfigureAwait(false);
    }

    private async Task RibSendLoopAsync(BgpConnection c)
    {
        try
        {
            while (true)
            {
                await _ribOut.WaitAsync(_life.Token).ConfigureAwait(false);
                if (c.IsClosing || _established != c)
                {
                    _ribOut.Signal(); // the wake-up may be meant for the next session's sender
                    return;
                }
                await _export.WaitAsync(_life.Token).ConfigureAwait(false);
                try
                {
                    // Until the initial dump ran (after any graceful-restart deferral), it sends what is pending.
                    if (c.IsClosing || !c.InitialDumpDone) continue;
                    await FlushRibAsync(c, _life.Token).ConfigureAwait(false);
                }
                finally
                {
                    _export.Release();
                }
            }
        }
        catch (OperationCanceledException)
        {
            // peer removed
        }
    }

    /// <summary>
    /// Sends the pending Adj-RIB-Out changes: withdrawals batched per family, then announcements grouped
    /// by outgoing attribute set (each group packed into as few UPDATEs as the negotiated message size allows).
    /// </summary>
    private async Task FlushRibAsync(BgpConnection c, CancellationToken ct)
    {
        var batch = _ribOut.Take(_ribSpare);
        int taken = batch.Count;
        try
        {
            if (taken == 0 || c.IsClosing) return;
            if (_items.Length < taken)
            {
                int size = Math.Max(taken, _items.Length * 2);
                _items = new Nlri[size];
                _next = new int[size];
            }
            int n = 0;
            foreach (var ((prefix, id), attrs) in batch)
            {
                bool v6 = prefix.IsIPv6;
                if (attrs is null)
                {
                    (v6 ? _withdraw6 : _withdraw4).Add(new Nlri(prefix, id));
                    continue;
                }
                _items[n] = new Nlri(prefix, id);
                _next[n] = -1;
                ref int gi = ref CollectionsMarshal.GetValueRefOrAddDefault(v6 ? _groups6 : _groups4, attrs, out bool exists);
                if (!exists)
                {
                    gi = _groupKeys.Count;
                    _groupKeys.Add((attrs, v6, n, n, 1));
                }
                else
                {
                    var g = _groupKeys[gi];
                    _next[g.Tail] = n;
                    _groupKeys[gi] = g with { Tail = n, Count = g.Count + 1 };
                }
                n++;
            }
            await SendWithdrawalsAsync(c, _withdraw4, ct).ConfigureAwait(false);
            await SendWithdrawalsAsync(c, _withdraw6, ct).ConfigureAwait(false);
            var ctx = c.Codec;
            int max = ctx.MaxMessageSize;
            Nlri[] scratch = ArrayPool<Nlri>.Shared.Rent(256);
            try
            {
                foreach (var (attrs, v6, head, _, count) in _groupKeys)
                {
                    var exported = RibExportAttributes(attrs, v6, c);
                    if (exported is null) continue;
                    if (scratch.Length < count)
                    {
                        ArrayPool<Nlri>.Shared.Return(scratch);
                        scratch = ArrayPool<Nlri>.Shared.Rent(count);
                    }
                    int k = 0;
                    for (int i = head; i >= 0; i = _next[i]) scratch[k++] = _items[i];
                    int done = 0;
                    while (done < count)
                    {
                        if (_packer.NeedsFlush(c, max)) await _packer.FlushAsync(ct).ConfigureAwait(false);
                        int len = UpdateCodec.WriteAnnounce(_packer.Space(c, max), exported, scratch.AsSpan(done, count - done), ctx, out int consumed);
                        if (consumed == 0) break; // the attributes alone exceed the message size
                        _packer.Commit(len);
                        done += consumed;
                    }
                }
            }
            finally
            {
                ArrayPool<Nlri>.Shared.Return(scratch);
            }
            await _packer.FlushAsync(ct).ConfigureAwait(false);
        }
        finally
        {
            _packer.Reset();
            batch.Clear();
            // Big buffers are reused while big batches come (a full-table flood: no regrowing and rehashing
            // per flush); after a small batch they are let go instead of being kept for ever.
            const int Keep = 65536;
            bool small = taken <= Keep / 4;
            _ribSpare = taken > Keep ? [] : batch;
            if (_items.Length > Keep && small)
            {
                _items = new Nlri[256];
                _next = new int[256];
            }
            _withdraw4.Clear();
            _withdraw6.Clear();
            _groups4.Clear();
            _groups6.Clear();
            _groupKeys.Clear();
            if (small && (_withdraw4.Capacity > Keep || _withdraw6.Capacity > Keep || _groupKeys.Capacity > Keep || _groups4.Capacity > Keep || _groups6.Capacity > Keep))
            {
                _withdraw4.Capacity = 0;
                _withdraw6.Capacity = 0;
                _groups4.TrimExcess();
                _groups6.TrimExcess();
                _groupKeys.Capacity = 0;
            }
        }
    }

    /// <summary>
    /// The session part of the export of a RIB route: towards eBGP (and with <see cref="BgpPeerOptions.NextHopSelf"/>)
    /// the next hop is our address (RFC 4271 5.1.3) and our AS is prepended (5.1.2); towards iBGP the next
    /// hop is kept (filled in only for originated routes without one) and LOCAL_PREF is always sent (5.1.5).
    /// </summary>
    private BgpPathAttributes? RibExportAttributes(BgpPathAttributes a, bool v6, BgpConnection c)
    {
        bool self = !c.Codec.IsInternal || Options.NextHopSelf;
        IPAddress? nh = self ? null : a.NextHop;
        IPAddress? ll = self ? null : a.LinkLocalNextHop;
        if (!ReferenceEquals(_exportConn, c))
        {
            _exportConn = c;
            var addr = c.LocalEndPoint.Address;
            _exportLocal = addr.IsIPv4MappedToIPv6 ? addr.MapToIPv4() : addr;
            _prepended.Clear();
            _noNextHopWarned = 0;
            _selfNhDone = 0;
        }
        if (nh is null)
        {
            if (!ReferenceEquals(_selfNhOptions, Options))
            {
                _selfNhOptions = Options; // UpdatePeerAsync replaces the options object (and re-exports)
                _selfNhDone = 0;
            }
            int f = v6 ? 1 : 0;
            if ((_selfNhDone & (1 << f)) == 0)
            {
                _selfNh[f] = SelfNextHop(v6, c, _exportLocal!, out _selfLl[f]);
                _selfNhDone |= 1 << f;
            }
            nh = _selfNh[f];
            ll = _selfLl[f];
        }
        // No usable next hop for this family on this session (RFC 4271 5.1.3; RFC 8950: IPv4 routes
        // with an IPv6 next hop need the extended next hop capability): not exported, said once per
        // session and family, as a configuration that silently drops a family would otherwise be.
        if (nh is null || (!v6 && nh.AddressFamily == AddressFamily.InterNetworkV6 && !c.Codec.ExtendedNextHopIPv4))
        {
            int bit = v6 ? 2 : 1;
            if ((_noNextHopWarned & bit) == 0)
            {
                _noNextHopWarned |= bit;
                RibLog.NoNextHop(_log, ToString(), v6 ? "IPv6" : "IPv4");
            }
            return null;
        }
        AsPath path;
        if (c.Codec.IsInternal)
        {
            path = a.AsPath;
        }
        else
        {
            // RFC 4271 5.1.2; one prepended path per received path instead of one per group and flush.
            if (_prepended.Count >= 1 << 13) _prepended.Clear(); // the decoder shares paths over a window of this order
            ref var cached = ref CollectionsMarshal.GetValueRefOrAddDefault(_prepended, a.AsPath, out bool had);
            if (!had) cached = a.AsPath.Prepend(_speaker.Options.LocalAs);
            path = cached!;
        }
        return a with { NextHop = nh, LinkLocalNextHop = ll, AsPath = path, LocalPreference = c.Codec.IsInternal ? a.LocalPreference ?? 100 : null };
    }

    /// <summary>
    /// Our own next hop for a route of the family <paramref name="v6"/> on session <paramref name="c"/>: the
    /// configured one, else the session's local address when of that family. An IPv6 one gets the link-local
    /// address of the session's interface as second next hop (RFC 2545 3) when <see cref="BgpPeerOptions.LinkLocalNextHop"/>
    /// is on, the global one is an address of that interface and the peer shares the link. A session over
    /// link-local addresses sends the interface's global address, or :: when it has none, with the link-local
    /// one (a link-local address is never the global next hop: RFC 2545 3).
    /// </summary>
    private IPAddress? SelfNextHop(bool v6, BgpConnection c, IPAddress local, out IPAddress? linkLocal)
    {
        linkLocal = null;
        var nh = v6 ? Options.NextHopIPv6 : Options.NextHopIPv4;
        bool fromLocal = false;
        if (nh is null && (local.AddressFamily == AddressFamily.InterNetworkV6) == v6)
        {
            nh = local;
            fromLocal = true;
        }
        if (nh is null || nh.AddressFamily != AddressFamily.InterNetworkV6) return nh;
        if (fromLocal && local.IsIPv6LinkLocal)
        {
            // RFC 2545 3: the link-local address (the one the peer talks to, without its scope) goes in the
            // second field; on an unnumbered link the global one is :: as FRR sends it.
            linkLocal = new IPAddress(local.GetAddressBytes());
            return c.Link?.Global ?? IPAddress.IPv6Any;
        }
        if (!Options.LinkLocalNextHop || nh.IsIPv6LinkLocal) return nh;
        if (c.Link is { LinkLocal: { } ll } onLink && onLink.Owns(nh))
        {
            bool singleHopEbgp = !c.Codec.IsInternal && (Options.Ttl == 1 || Options.TtlSecurityHops == 1);
            if (singleHopEbgp || onLink.OnLink(c.RemoteEndPoint.Address))
                linkLocal = ll;
        }
        return nh;
    }

    private async Task SendWithdrawalsAsync(BgpConnection c, List<Nlri> list, CancellationToken ct)
    {
        int max = c.Codec.MaxMessageSize;
        int done = 0;
        while (done < list.Count)
        {
            if (_packer.NeedsFlush(c, max)) await _packer.FlushAsync(ct).ConfigureAwait(false);
            int len = UpdateCodec.WriteWithdraw(_packer.Space(c, max), CollectionsMarshal.AsSpan(list)[done..], c.Codec, out int consumed);
            _packer.Commit(len);
            done += consumed;
        }
    }
}
