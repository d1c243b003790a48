using System.Buffers.Binary;
using Netcore.Bgp.Messages;
using Netcore.Bgp.Session;

namespace Netcore.Bgp;

/// <summary>
/// "AFI/SAFI disable" (RFC 4760 7, RFC 7606 7.11 and 7.12): an optional alternative to the session
/// reset for a malformed MP_REACH_NLRI / MP_UNREACH_NLRI.
/// </summary>
public sealed partial class BgpPeer
{
    /// <summary>
    /// Called on the reader right after an UPDATE was decoded. With <see cref="BgpPeerOptions.AfiSafiDisable"/>,
    /// a session reset caused by a malformed MP attribute whose AFI/SAFI can still be read becomes: delete
    /// every route of that family learned on the session and ignore the family until the session ends
    /// (RFC 4760 7). Routes of families already disabled are dropped from every later UPDATE.
    /// </summary>
    private void ApplyAfiSafiDisable(BgpConnection c, ReadOnlySpan<byte> body, UpdateParseResult r)
    {
        if (r.Action == UpdateAction.SessionReset)
        {
            if (!Options.AfiSafiDisable || r.Reason is not { } reason)
                return;
            byte code = reason.StartsWith("MP_REACH_NLRI malformed", StringComparison.Ordinal) ? (byte)14
                : reason.StartsWith("MP_UNREACH_NLRI malformed", StringComparison.Ordinal) ? (byte)15 : (byte)0;
            if (code == 0 || FindMpFamily(body, code) is not { } family)
                return; // another error, or the AFI/SAFI itself is unreadable: the session reset stands
            r.Clear(); // the whole UPDATE is dropped
            if (c.DisabledFamilies.Add(family))
            {
                GrLog.AfiSafiDisabled(_log, Name, family, reason);
                BgpMetrics.UpdateErrors.Add(1, new KeyValuePair<string, object?>("action", "AfiSafiDisable"));
                // RFC 4760 7: delete every route of that AFI/SAFI received from the neighbour.
                var store = _speaker.GracefulRestart.Store;
                store?.MarkStale(this, family);
                store?.SweepStale(this, family);
            }
            return;
        }
        if (c.DisabledFamilies.Count == 0)
            return;
        // RFC 4760 7: ignore all subsequent routes of a disabled AFI/SAFI for the rest of the session.
        bool Disabled(Nlri n) => c.DisabledFamilies.Contains(n.Prefix.IsIPv6 ? BgpFamily.IPv6Unicast : BgpFamily.IPv4Unicast);
        r.Announced.RemoveAll(Disabled);
        r.Withdrawn.RemoveAll(Disabled);
        if (c.DisabledFamilies.Contains(BgpFamily.IPv4Unicast)) r.TreatedAsWithdraw[0] = 0; // dropped, not withdrawn
        if (c.DisabledFamilies.Contains(BgpFamily.IPv6Unicast)) r.TreatedAsWithdraw[1] = 0;
        if (r.EndOfRib is { } eor && c.DisabledFamilies.Contains(eor))
            r.EndOfRib = null;
    }

    /// <summary>The AFI/SAFI of the first attribute <paramref name="code"/> of a raw UPDATE body (RFC 4271 4.3), or null.</summary>
    internal static BgpFamily? FindMpFamily(ReadOnlySpan<byte> body, byte code)
    {
        if (body.Length < 4) return null;
        int wl = BinaryPrimitives.ReadUInt16BigEndian(body);
        if (body.Length < 4 + wl) return null;
        int al = BinaryPrimitives.ReadUInt16BigEndian(body[(2 + wl)..]);
        var attrs = body.Slice(4 + wl, Math.Min(al, body.Length - 4 - wl));
        while (attrs.Length >= 3)
        {
            byte flags = attrs[0], type = attrs[1];
            bool ext = (flags & 0x10) != 0; // RFC 4271 4.3: extended length bit
            int hdr = ext ? 4 : 3;
            if (attrs.Length < hdr) return null;
            int len = ext ? BinaryPrimitives.ReadUInt16BigEndian(attrs[2..]) : attrs[2];
            var value = attrs.Slice(hdr, Math.Min(len, attrs.Length - hdr));
            if (type == code)
                return value.Length >= 3 ? new BgpFamily((BgpAfi)BinaryPrimitives.ReadUInt16BigEndian(value), (BgpSafi)value[2]) : null;
            if (attrs.Length < hdr + len) return null;
            attrs = attrs[(hdr + len)..];
        }
        return null;
    }
}
