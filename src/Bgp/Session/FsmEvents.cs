namespace Netcore.Bgp.Session;

/// <summary>The 28 events of RFC 4271 8.1 (numbers as in the RFC).</summary>
internal enum BgpFsmEvent
{
    ManualStart = 1,
    ManualStop = 2,
    AutomaticStart = 3,
    ManualStartWithPassiveTcpEstablishment = 4,
    AutomaticStartWithPassiveTcpEstablishment = 5,
    AutomaticStartWithDampPeerOscillations = 6,
    AutomaticStartWithDampPeerOscillationsAndPassiveTcpEstablishment = 7,
    AutomaticStop = 8,
    ConnectRetryTimerExpires = 9,
    HoldTimerExpires = 10,
    KeepaliveTimerExpires = 11,
    DelayOpenTimerExpires = 12,
    IdleHoldTimerExpires = 13,
    TcpConnectionValid = 14,
    TcpCrInvalid = 15,
    TcpCrAcked = 16,
    TcpConnectionConfirmed = 17,
    TcpConnectionFails = 18,
    BgpOpen = 19,
    BgpOpenWithDelayOpenTimerRunning = 20,
    BgpHeaderErr = 21,
    BgpOpenMsgErr = 22,
    OpenCollisionDump = 23,
    NotifMsgVerErr = 24,
    NotifMsg = 25,
    KeepAliveMsg = 26,
    UpdateMsg = 27,
    UpdateMsgErr = 28,
}

/// <summary>How one RFC 4271 8.1 event is handled here, per state (RFC 4271 8.2.2).</summary>
/// <param name="Event">The event.</param>
/// <param name="Handling">Where and how the FSM handles it; "not applicable" entries say why.</param>
/// <param name="Transitions">The transitions it causes ("From -> To"), empty when it causes none.</param>
internal sealed record FsmEventEntry(BgpFsmEvent Event, string Handling, IReadOnlyList<string> Transitions);

/// <summary>
/// The RFC 4271 8.1 events mapped to what this implementation does. The FSM runs per connection
/// (several can exist during a collision, RFC 4271 6.8) and the peer's state is derived from its
/// connections (<c>BgpPeer.Recompute</c>); this table is the audit trail from the RFC's events to the
/// code, and the tests in tests/Netcore.Bgp.Tests/Fsm drive each event that changes state.
/// </summary>
internal static class FsmEventTable
{
    public static IReadOnlyList<FsmEventEntry> Entries { get; } =
    [
        new(BgpFsmEvent.ManualStart, "BgpPeer.StartAsync: connect now (connect-retry timer due at once)", ["Idle -> Connect", "Idle -> Active (passive)"]),
        new(BgpFsmEvent.ManualStop, "BgpPeer.ShutdownAsync/StopAsync: NOTIFICATION Cease/Administrative Shutdown (RFC 9003 message) on every connection, stay Idle", ["Connect|Active|OpenSent|OpenConfirm|Established -> Idle"]),
        new(BgpFsmEvent.AutomaticStart, "BgpPeerOptions.AutoStart: StartAsync when the peer is added; after a session error the connect-retry timer restarts it", ["Idle -> Connect"]),
        new(BgpFsmEvent.ManualStartWithPassiveTcpEstablishment, "StartAsync with BgpPeerOptions.Passive: wait for the peer's connection", ["Idle -> Active"]),
        new(BgpFsmEvent.AutomaticStartWithPassiveTcpEstablishment, "AutoStart with Passive (also every dynamic peer)", ["Idle -> Active"]),
        new(BgpFsmEvent.AutomaticStartWithDampPeerOscillations, "not applicable: no peer oscillation damping; the connect-retry backoff (doubling with jitter up to MaxConnectRetryTime) limits flapping instead", []),
        new(BgpFsmEvent.AutomaticStartWithDampPeerOscillationsAndPassiveTcpEstablishment, "not applicable: as event 6", []),
        new(BgpFsmEvent.AutomaticStop, "max-prefix teardown in the RIB and ChangeOptionsAsync (Cease/Other Configuration Change) close the session with a NOTIFICATION", ["OpenSent|OpenConfirm|Established -> Idle"]),
        new(BgpFsmEvent.ConnectRetryTimerExpires, "BgpPeer.TickAsync: StartConnect when no connection exists and the (backed-off) timer is due", ["Active -> Connect"]),
        new(BgpFsmEvent.HoldTimerExpires, "BgpPeer.TickAsync: NOTIFICATION Hold Timer Expired, drop the connection", ["OpenSent|OpenConfirm|Established -> Idle"]),
        new(BgpFsmEvent.KeepaliveTimerExpires, "BgpPeer.TickAsync: KEEPALIVE on the control queue (never behind UPDATEs)", []),
        new(BgpFsmEvent.DelayOpenTimerExpires, "BgpPeer.TickDelayOpen: send the delayed OPEN (BgpPeerOptions.DelayOpenTime)", ["Connect|Active -> OpenSent"]),
        new(BgpFsmEvent.IdleHoldTimerExpires, "after a session error the connect-retry timer (jittered) doubles as the IdleHold timer before the automatic restart", ["Idle -> Connect"]),
        new(BgpFsmEvent.TcpConnectionValid, "BgpSpeaker.AcceptLoopAsync: a connection from a configured address or a dynamic range goes to its peer", []),
        new(BgpFsmEvent.TcpCrInvalid, "BgpSpeaker.AcceptLoopAsync: a connection from an unconfigured address is closed (also while the peer is administratively down)", []),
        new(BgpFsmEvent.TcpCrAcked, "BgpPeer.StartConnect: our connect completed, send OPEN (or start DelayOpen)", ["Connect -> OpenSent"]),
        new(BgpFsmEvent.TcpConnectionConfirmed, "BgpPeer.AcceptAsync: the peer's connection accepted, send OPEN (or start DelayOpen)", ["Active -> OpenSent"]),
        new(BgpFsmEvent.TcpConnectionFails, "StartConnect failure: connect-retry timer with backoff; a dropped connection before Established likewise", ["Connect -> Active", "OpenSent -> Active"]),
        new(BgpFsmEvent.BgpOpen, "BgpPeer.OnOpenAsync: checks (RFC 4271 6.2, RFC 6286, RFC 9234), collision detection, negotiation, KEEPALIVE; an OPEN in OpenConfirm/Established is an FSM error (RFC 6608)", ["OpenSent -> OpenConfirm"]),
        new(BgpFsmEvent.BgpOpenWithDelayOpenTimerRunning, "BgpPeer.SendDelayedOpen: answer with OPEN then KEEPALIVE at once", ["Connect|Active -> OpenConfirm"]),
        new(BgpFsmEvent.BgpHeaderErr, "BgpConnection.NextMessage / BgpMessageHeader.TryRead: NOTIFICATION Message Header Error, drop", ["OpenSent|OpenConfirm|Established -> Idle"]),
        new(BgpFsmEvent.BgpOpenMsgErr, "OpenMessage.Read / OnOpenAsync: NOTIFICATION OPEN Message Error with the RFC 4271 6.2 subcode, drop", ["OpenSent -> Idle"]),
        new(BgpFsmEvent.OpenCollisionDump, "OnOpenAsync collision detection (RFC 4271 6.8): Cease/Connection Collision Resolution on the losing connection; the peer state follows the surviving one", []),
        new(BgpFsmEvent.NotifMsgVerErr, "a NOTIFICATION with OPEN Message Error/Unsupported Version Number ends the connection like event 25 (no version fallback: only BGP-4)", ["OpenSent|OpenConfirm -> Idle"]),
        new(BgpFsmEvent.NotifMsg, "OnMessageAsync NOTIFICATION: logged, kept as Statistics.LastError, drop", ["OpenSent|OpenConfirm|Established -> Idle"]),
        new(BgpFsmEvent.KeepAliveMsg, "OnKeepaliveAsync: restarts the hold timer; in OpenConfirm completes the session; in OpenSent an FSM error (RFC 6608 subcode 1)", ["OpenConfirm -> Established"]),
        new(BgpFsmEvent.UpdateMsg, "OnUpdate: decoded on the reader and handed to the RIB/stream; before Established an FSM error (RFC 6608)", ["OpenSent|OpenConfirm -> Idle"]),
        new(BgpFsmEvent.UpdateMsgErr, "OnUpdate: RFC 7606 action from the attribute table (session reset -> NOTIFICATION UPDATE Message Error, drop; or treat-as-withdraw / attribute discard / AFI-SAFI disable)", ["Established -> Idle (session reset only)"]),
    ];
}
