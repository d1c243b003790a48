using System.Buffers;
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
    private readonly List<List<Nlri>> _groupLists = [];
    private readonly List<(BgpPathAttributes Attrs, bool V6)> _groupKeys = [];
    private readonly List<Nlri> _withdraw4 = [], _withdraw6 = [];
    private Dictionary<(BgpPrefix Prefix, uint PathId), BgpPathAttributes?> _ribSpare = [];
    private Task _ribUp = Task.CompletedTask;

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
                    if (c.IsClosing) continue;
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
        int groups = 0;
        try
        {
            if (batch.Count == 0 || c.IsClosing) return;
            foreach (var ((prefix, id), attrs) in batch)
            {
                bool v6 = prefix.IsIPv6;
                if (attrs is null)
                {
                    (v6 ? _withdraw6 : _withdraw4).Add(new Nlri(prefix, id));
                    continue;
                }
                ref int gi = ref CollectionsMarshal.GetValueRefOrAddDefault(v6 ? _groups6 : _groups4, attrs, out bool exists);
                if (!exists)
                {
                    gi = groups++;
                    if (_groupLists.Count < groups) _groupLists.Add([]);
                    if (_groupKeys.Count < groups) _groupKeys.Add((attrs, v6));
                    else _groupKeys[gi] = (attrs, v6);
                }
                _groupLists[gi].Add(new Nlri(prefix, id));
            }
            await SendWithdrawalsAsync(c, _withdraw4, ct).ConfigureAwait(false);
            await SendWithdrawalsAsync(c, _withdraw6, ct).ConfigureAwait(false);
            var ctx = c.Codec;
            int max = ctx.MaxMessageSize;
            for (int g = 0; g < groups; g++)
            {
                var (attrs, v6) = _groupKeys[g];
                var exported = ExportAttributes(attrs, v6, c);
                if (exported is null) continue;
                var list = _groupLists[g];
                int done = 0;
                while (done < list.Count)
                {
                    byte[] buf = ArrayPool<byte>.Shared.Rent(max);
                    int len = UpdateCodec.WriteAnnounce(buf.AsSpan(0, max), exported, CollectionsMarshal.AsSpan(list)[done..], ctx, out int consumed);
                    if (consumed == 0)
                    {
                        ArrayPool<byte>.Shared.Return(buf);
                        break; // the attributes alone exceed the message size
                    }
                    done += consumed;
                    await c.SendBulkAsync(buf, len, ct).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            batch.Clear();
            _ribSpare = batch;
            _withdraw4.Clear();
            _withdraw6.Clear();
            _groups4.Clear();
            _groups6.Clear();
            for (int g = 0; g < groups; g++)
            {
                _groupLists[g].Clear();
                _groupKeys[g] = default;
            }
        }
    }

    private static async Task SendWithdrawalsAsync(BgpConnection c, List<Nlri> list, CancellationToken ct)
    {
        int max = c.Codec.MaxMessageSize;
        int done = 0;
        while (done < list.Count)
        {
            byte[] buf = ArrayPool<byte>.Shared.Rent(max);
            int len = UpdateCodec.WriteWithdraw(buf.AsSpan(0, max), CollectionsMarshal.AsSpan(list)[done..], c.Codec, out int consumed);
            done += consumed;
            await c.SendBulkAsync(buf, len, ct).ConfigureAwait(false);
        }
    }
}
