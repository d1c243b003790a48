using Netcore.Bgp.Session;

namespace Netcore.Bgp;

/// <summary>DelayOpen (RFC 4271 8.1.1 optional session attributes DelayOpen, DelayOpenTime, DelayOpenTimer).</summary>
public sealed partial class BgpPeer
{
    /// <summary>
    /// RFC 4271 8.2.2 (Connect/Active, event 16/17 with DelayOpen TRUE): on a new TCP connection start
    /// the DelayOpenTimer instead of sending OPEN; otherwise send OPEN at once.
    /// </summary>
    private void SendOpenOrDelay(BgpConnection c)
    {
        if (Options.DelayOpenTime is { } d && d > TimeSpan.Zero)
        {
            c.DelayOpenDueMs = Environment.TickCount64 + (long)d.TotalMilliseconds;
            return;
        }
        SendOpenNow(c);
    }

    private void SendOpenNow(BgpConnection c)
    {
        c.DelayOpenDueMs = 0;
        c.OpenWasSent = true;
        c.SendControl(BuildOpen().ToArray());
    }

    /// <summary>RFC 4271 8.2.2 event 20 (BGPOpen with the DelayOpenTimer running): our OPEN goes out now, before the KEEPALIVE.</summary>
    private void SendDelayedOpen(BgpConnection c)
    {
        if (!c.OpenWasSent)
            SendOpenNow(c);
    }

    /// <summary>RFC 4271 8.2.2 event 12 (DelayOpenTimer_Expires): send OPEN, go to OpenSent.</summary>
    private void TickDelayOpen(BgpConnection c, long now)
    {
        if (!c.OpenWasSent && c.DelayOpenDueMs != 0 && now >= c.DelayOpenDueMs)
            SendOpenNow(c);
    }
}
