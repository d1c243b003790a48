using Netcore.Bgp.Capabilities;
using Netcore.Bgp.Messages;
using Netcore.Bgp.Session;

namespace Netcore.Bgp;

/// <summary>The graceful restart (RFC 4724, RFC 8538) part of a peer's FSM: both the restarting and the helper side.</summary>
public sealed partial class BgpPeer
{
    private GracefulRestartHelper? _grHelper;

    internal BgpSpeaker Speaker => _speaker;

    internal bool IsStarted => _started;

    private GracefulRestartHelper GrHelper => _grHelper ??= new GracefulRestartHelper(this, _log);

    /// <summary>
    /// Families whose routes learned from this peer are currently kept as stale because the peer is
    /// restarting (RFC 4724 4.2): from the session loss until its End-of-RIB, its restart timer or the
    /// stale timer. Empty otherwise.
    /// </summary>
    public IReadOnlyCollection<BgpFamily> StaleFamilies => GrHelper.StaleFamilies;

    /// <summary>Records what the OPENs said about graceful restart (called when the OPEN is accepted).</summary>
    private void GrNegotiated(BgpConnection c, OpenMessage open, IReadOnlyList<BgpFamily> families)
    {
        var theirs = open.Find<GracefulRestartCapability>();
        var mine = GracefulRestartSession.Build(Options, _speaker.GracefulRestart);
        bool nBoth = theirs is not null && mine is not null && (theirs.Flags & GrFlags.Notification) != 0 && (mine.Flags & GrFlags.Notification) != 0;
        var s = new GracefulRestartSession(theirs, families, nBoth);
        c.GracefulRestart = s;
        if (c.Negotiated is { } n)
        {
            c.Negotiated = n with
            {
                PeerRestartState = s.PeerRestarting,
                PeerForwardingState = theirs?.Families.Where(f => (f.Flags & GrFlags.ForwardingState) != 0).Select(f => f.Family).ToArray() ?? [],
                GracefulRestartNotification = nBoth,
            };
        }
    }

    /// <summary>The session reached Established: helper-side checks of the new OPEN, and the restarting side's deferral.</summary>
    private void GrSessionUp(BgpConnection c)
    {
        if (c.GracefulRestart is { } s)
            GrHelper.OnSessionUp(s);
        _speaker.GracefulRestart.Evaluate();
    }

    /// <summary>The established session ended; returns true when the peer's routes are kept as stale.</summary>
    private bool GrSessionDown(BgpConnection c, BgpNotification? n)
    {
        var s = c.GracefulRestart ?? new GracefulRestartSession(null, c.Negotiated?.Families ?? [], false);
        return GrHelper.OnSessionDown(s, n);
    }

    /// <summary>End-of-RIB from the peer (RFC 4724 2): sweeps stale routes and may end our selection deferral.</summary>
    private void GrEndOfRib(BgpConnection c, BgpFamily family)
    {
        lock (c.EndOfRibReceived) c.EndOfRibReceived.Add(family);
        GrHelper.OnEndOfRib(family);
        _speaker.GracefulRestart.Evaluate();
    }

    /// <summary>
    /// RFC 4724 4.1 with the RIB: while the speaker is restarting, the RIB's export to a new session
    /// (<c>RibSessionUp</c>) starts only once the selection deferral ended, so no route leaves before it.
    /// </summary>
    private void GrRibSessionUp(BgpConnection c)
    {
        if (_speaker.GracefulRestart.Restarting)
        {
            c.RibUpDeferred = true;
            return;
        }
        RibSessionUp(c);
    }

    /// <summary>Waits for the selection deferral (RFC 4724 4.1), then starts a deferred RIB export under the FSM gate.</summary>
    private async Task GrAwaitDeferralAsync(BgpConnection c)
    {
        await _speaker.GracefulRestart.DeferralDone.WaitAsync(_life.Token).ConfigureAwait(false);
        if (!c.RibUpDeferred)
            return;
        await _gate.WaitAsync(_life.Token).ConfigureAwait(false);
        try
        {
            if (c.RibUpDeferred && !c.IsClosing && _established == c)
            {
                c.RibUpDeferred = false;
                RibSessionUp(c);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>
    /// RFC 4724 4.1: a restarting speaker waits for End-of-RIB from every peer, except peers that
    /// did not advertise graceful restart on the new session and peers restarting themselves.
    /// </summary>
    internal bool GracefulRestartDeferralSatisfied()
    {
        var c = _established;
        if (c is null || c.GracefulRestart is not { } s)
            return false;
        if (s.PeerCapability is null || s.PeerRestarting)
            return true;
        lock (c.EndOfRibReceived)
            return s.Families.All(c.EndOfRibReceived.Contains);
    }

    /// <summary>
    /// RFC 8538 3 and 5: when both sides set the N bit, a NOTIFICATION that must flush the peer's
    /// routes (administrative shutdown, reset, de-configuration, maximum prefixes) is sent as
    /// Cease / Hard Reset carrying the original code, subcode and data; other NOTIFICATIONs then keep
    /// the routes as for a TCP failure.
    /// </summary>
    private static BgpNotification GrOutgoing(BgpConnection c, BgpNotification n)
    {
        if (c.GracefulRestart is not { NotificationBitBoth: true } || n.Code != BgpErrorCode.Cease)
            return n;
        var sub = (BgpCeaseError)n.Subcode;
        if (sub is not (BgpCeaseError.AdministrativeShutdown or BgpCeaseError.AdministrativeReset or BgpCeaseError.PeerDeconfigured or BgpCeaseError.MaximumPrefixesReached))
            return n;
        byte[] data = new byte[2 + n.Data.Length];
        data[0] = (byte)n.Code;
        data[1] = n.Subcode;
        n.Data.Span.CopyTo(data.AsSpan(2));
        return new BgpNotification(BgpErrorCode.Cease, GracefulRestartHelper.HardResetSubcode, data);
    }
}
