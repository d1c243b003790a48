using Netcore.Bfd.Packets;
using Netcore.Bfd.Session;

namespace Netcore.Bfd.Tests;

/// <summary>The RFC 5880 6.2/6.8 state machine driven by a fake clock (nanoseconds).</summary>
public class StateMachineTests
{
    private const uint Local = 0xA1A1A1A1, Remote = 0xB2B2B2B2;
    private const long Ms = 1_000_000;
    private readonly List<(BfdState Old, BfdState New, BfdDiagnostic Diag)> _changes = [];
    private readonly long _now = 1000 * Ms;

    private BfdStateMachine Fsm(uint txUs = 50_000, uint rxUs = 50_000, byte mult = 3, Authenticator? auth = null, bool c = false, int seed = 1)
    {
        var f = new BfdStateMachine(Local, txUs, rxUs, mult, auth, c, new Random(seed));
        f.StateChanged = (o, n, d, _) => _changes.Add((o, n, d));
        f.Start(_now);
        return f;
    }

    private static byte[] Packet(BfdState state, uint your = Local, bool poll = false, bool final = false, bool demand = false,
        uint tx = 50_000, uint rx = 50_000, byte mult = 3, bool c = false, BfdDiagnostic diag = BfdDiagnostic.None, Authenticator? auth = null)
    {
        var p = new ControlPacket
        {
            Version = 1, State = state, Poll = poll, Final = final, Demand = demand, ControlPlaneIndependent = c,
            Diagnostic = diag, DetectMult = mult, MyDiscriminator = Remote, YourDiscriminator = your,
            DesiredMinTxInterval = tx, RequiredMinRxInterval = rx, AuthPresent = auth is not null,
            Length = (byte)(24 + (auth?.SectionLength ?? 0)),
        };
        byte[] b = new byte[p.Length];
        p.WriteMandatory(b);
        auth?.Sign(b);
        return b;
    }

    private ReceiveResult Rx(BfdStateMachine f, byte[] b)
    {
        Assert.Equal(PacketError.None, ControlPacket.TryRead(b, out ControlPacket p));
        return f.Receive(b, p, _now, _now);
    }

    private static ControlPacket Sent(BfdStateMachine f, long now, bool periodic = true)
    {
        byte[] buf = new byte[64];
        int n = f.BuildPacket(buf, now, periodic);
        Assert.Equal(PacketError.None, ControlPacket.TryRead(buf.AsSpan(0, n), out ControlPacket p));
        return p;
    }

    private BfdStateMachine UpSession(uint txUs = 50_000, uint rxUs = 50_000, byte mult = 3)
    {
        BfdStateMachine f = Fsm(txUs, rxUs, mult);
        Rx(f, Packet(BfdState.Init, your: Local));
        Assert.Equal(BfdState.Up, f.SessionState);
        // Complete the Poll Sequence that entering Up starts (RFC 5880 6.8.3).
        Rx(f, Packet(BfdState.Up, final: true));
        Assert.False(f.PollActive);
        _changes.Clear();
        return f;
    }

    // --- RFC 5880 6.2 transitions --------------------------------------------------------

    [Fact]
    public void DownToInitOnDown()
    {
        BfdStateMachine f = Fsm();
        Assert.Equal(ReceiveResult.Accepted, Rx(f, Packet(BfdState.Down, your: 0)));
        Assert.Equal(BfdState.Init, f.SessionState);
        Assert.Equal(Remote, f.RemoteDiscr);
        Assert.Equal([(BfdState.Down, BfdState.Init, BfdDiagnostic.None)], _changes);
    }

    [Fact]
    public void DownToUpOnInit()
    {
        BfdStateMachine f = Fsm();
        Rx(f, Packet(BfdState.Init));
        Assert.Equal(BfdState.Up, f.SessionState);
        Assert.Equal([(BfdState.Down, BfdState.Up, BfdDiagnostic.None)], _changes);
    }

    [Fact]
    public void DownStaysDownOnUp()
    {
        BfdStateMachine f = Fsm();
        Assert.Equal(ReceiveResult.Accepted, Rx(f, Packet(BfdState.Up)));
        Assert.Equal(BfdState.Down, f.SessionState);
        Assert.Empty(_changes);
    }

    [Theory]
    [InlineData(BfdState.Init)]
    [InlineData(BfdState.Up)]
    public void InitToUpOnInitOrUp(BfdState received)
    {
        BfdStateMachine f = Fsm();
        Rx(f, Packet(BfdState.Down, your: 0));
        Rx(f, Packet(received));
        Assert.Equal(BfdState.Up, f.SessionState);
    }

    [Fact]
    public void InitStaysInitOnDown()
    {
        BfdStateMachine f = Fsm();
        Rx(f, Packet(BfdState.Down, your: 0));
        Rx(f, Packet(BfdState.Down));
        Assert.Equal(BfdState.Init, f.SessionState);
    }

    [Fact]
    public void UpToDownOnDownWithNeighborSignaledDiagnostic()
    {
        BfdStateMachine f = UpSession();
        Rx(f, Packet(BfdState.Down, diag: BfdDiagnostic.ControlDetectionTimeExpired));
        Assert.Equal(BfdState.Down, f.SessionState);
        Assert.Equal(BfdDiagnostic.NeighborSignaledSessionDown, f.LocalDiag);
        Assert.Equal(BfdDiagnostic.ControlDetectionTimeExpired, f.RemoteDiag);
        Assert.Equal([(BfdState.Up, BfdState.Down, BfdDiagnostic.NeighborSignaledSessionDown)], _changes);
        Assert.Equal(BfdDiagnostic.NeighborSignaledSessionDown, Sent(f, _now).Diagnostic);
    }

    [Theory]
    [InlineData(BfdState.Up)]
    [InlineData(BfdState.Init)]
    public void AnyToDownOnRemoteAdminDown(BfdState from)
    {
        BfdStateMachine f = from == BfdState.Up ? UpSession() : Fsm();
        if (from == BfdState.Init)
            Rx(f, Packet(BfdState.Down, your: 0));
        Rx(f, Packet(BfdState.AdminDown, diag: BfdDiagnostic.AdministrativelyDown));
        Assert.Equal(BfdState.Down, f.SessionState);
        Assert.Equal(BfdDiagnostic.NeighborSignaledSessionDown, f.LocalDiag);
        Assert.Equal(BfdDiagnostic.AdministrativelyDown, f.RemoteDiag);
    }

    [Fact]
    public void DownIgnoresRemoteAdminDown()
    {
        BfdStateMachine f = Fsm();
        Rx(f, Packet(BfdState.AdminDown, your: 0));
        Assert.Equal(BfdState.Down, f.SessionState);
        Assert.Equal(BfdDiagnostic.None, f.LocalDiag);
        Assert.Empty(_changes);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void DetectionTimeExpiryTakesUpOrInitDownWithDiagnostic1(bool up)
    {
        BfdStateMachine f = up ? UpSession() : Fsm();
        if (!up)
            Rx(f, Packet(BfdState.Down, your: 0));
        long deadline = f.DetectDeadline;
        // RFC 5880 6.8.4: remote Detect Mult x max(bfd.RequiredMinRxInterval, remote Desired Min TX).
        Assert.Equal(_now + (up ? 3 * 50 : 3 * 50) * Ms, deadline);
        f.OnTimer(deadline - 1);
        Assert.NotEqual(BfdState.Down, f.SessionState);
        f.OnTimer(deadline);
        Assert.Equal(BfdState.Down, f.SessionState);
        Assert.Equal(BfdDiagnostic.ControlDetectionTimeExpired, f.LocalDiag);
        Assert.Equal(0u, f.RemoteDiscr); // RFC 5880 6.8.1
        Assert.Equal(BfdDiagnostic.ControlDetectionTimeExpired, _changes[^1].Diag);
    }

    [Fact]
    public void DetectionTimeUsesLargerOfLocalRxAndRemoteTx()
    {
        BfdStateMachine f = Fsm(rxUs: 100_000);
        Rx(f, Packet(BfdState.Down, your: 0, tx: 300_000, mult: 5));
        Assert.Equal(5ul * 300_000, f.DetectionTimeUs);
        Rx(f, Packet(BfdState.Init, tx: 20_000, mult: 2));
        Assert.Equal(2ul * 100_000, f.DetectionTimeUs);
    }

    [Fact]
    public void LocalAdminDownSendsDiagnostic7DiscardsPacketsAndAdminUpReturnsToDown()
    {
        BfdStateMachine f = UpSession();
        f.AdminDown(_now);
        Assert.Equal(BfdState.AdminDown, f.SessionState);
        ControlPacket p = Sent(f, _now);
        Assert.Equal(BfdState.AdminDown, p.State);
        Assert.Equal(BfdDiagnostic.AdministrativelyDown, p.Diagnostic);
        Assert.Equal(BfdStateMachine.Never, f.DetectDeadline);
        // RFC 5880 6.8.6: "If bfd.SessionState is AdminDown: Discard the packet."
        Assert.Equal(ReceiveResult.AdminDownDiscard, Rx(f, Packet(BfdState.Up)));
        Assert.Equal(BfdState.AdminDown, f.SessionState);
        f.AdminUp(_now);
        Assert.Equal(BfdState.Down, f.SessionState);
        Assert.Equal([(BfdState.Up, BfdState.AdminDown, BfdDiagnostic.AdministrativelyDown), (BfdState.AdminDown, BfdState.Down, BfdDiagnostic.AdministrativelyDown)], _changes);
    }

    [Theory]
    [InlineData(BfdDiagnostic.EchoFunctionFailed)]
    [InlineData(BfdDiagnostic.ForwardingPlaneReset)]
    [InlineData(BfdDiagnostic.PathDown)]
    [InlineData(BfdDiagnostic.ConcatenatedPathDown)]
    [InlineData(BfdDiagnostic.ReverseConcatenatedPathDown)]
    public void ExternallySignalledDiagnosticsTakeTheSessionDownAndAreSent(BfdDiagnostic diag)
    {
        BfdStateMachine f = UpSession();
        f.SignalDown(diag, _now);
        Assert.Equal(BfdState.Down, f.SessionState);
        Assert.Equal([(BfdState.Up, BfdState.Down, diag)], _changes);
        Assert.Equal(diag, Sent(f, _now).Diagnostic);
    }

    [Fact]
    public void UpClearsDiagnostic()
    {
        BfdStateMachine f = UpSession();
        Rx(f, Packet(BfdState.Down));
        Assert.Equal(BfdDiagnostic.NeighborSignaledSessionDown, f.LocalDiag);
        Rx(f, Packet(BfdState.Init));
        Assert.Equal(BfdState.Up, f.SessionState);
        Assert.Equal(BfdDiagnostic.None, f.LocalDiag);
    }

    // --- RFC 5880 6.8.6 stateful reception rules ---------------------------------------

    [Fact]
    public void DiscardsOtherYourDiscriminator() =>
        Assert.Equal(ReceiveResult.WrongDiscriminator, Rx(Fsm(), Packet(BfdState.Down, your: 12345)));

    [Theory]
    [InlineData(BfdState.Init)]
    [InlineData(BfdState.Up)]
    public void DiscardsZeroYourDiscriminatorUnlessDownOrAdminDown(BfdState state) =>
        Assert.Equal(ReceiveResult.ZeroYourDiscriminatorNotDown, Rx(Fsm(), Packet(state, your: 0)));

    [Fact]
    public void DiscardsABitMismatchAndFailedAuthentication()
    {
        var cfg = BfdAuthentication.Create(BfdAuthType.MeticulousKeyedSha1, 3, "key");
        // A bit set, no authentication configured.
        Assert.Equal(ReceiveResult.AuthMismatch, Rx(Fsm(), Packet(BfdState.Down, your: 0, auth: new Authenticator(cfg, 1))));
        // A bit clear, authentication configured.
        Assert.Equal(ReceiveResult.AuthMismatch, Rx(Fsm(auth: new Authenticator(cfg, 1)), Packet(BfdState.Down, your: 0)));
        // Wrong key.
        var wrong = new Authenticator(BfdAuthentication.Create(BfdAuthType.MeticulousKeyedSha1, 3, "kez"), 1);
        BfdStateMachine f = Fsm(auth: new Authenticator(cfg, 1));
        Assert.Equal(ReceiveResult.AuthFailed, Rx(f, Packet(BfdState.Down, your: 0, auth: wrong)));
        Assert.Equal(BfdState.Down, f.SessionState);
        // Right key: accepted and our packets carry the section.
        Assert.Equal(ReceiveResult.Accepted, Rx(f, Packet(BfdState.Down, your: 0, auth: new Authenticator(cfg, 7))));
        Assert.Equal(BfdState.Init, f.SessionState);
        ControlPacket sent = Sent(f, _now);
        Assert.True(sent.AuthPresent);
        Assert.Equal(BfdAuthType.MeticulousKeyedSha1, sent.AuthType);
    }

    // --- Timers, Poll/Final (RFC 5880 6.5, 6.8.2, 6.8.3, 6.8.7) ------------------------

    [Fact]
    public void SlowTransmitOfOneSecondUntilUp()
    {
        BfdStateMachine f = Fsm(txUs: 50_000);
        ControlPacket p = Sent(f, _now);
        Assert.Equal(1_000_000u, p.DesiredMinTxInterval); // RFC 5880 6.8.3
        Assert.InRange(f.NextTx - _now, 750 * Ms, 1000 * Ms);
        Rx(f, Packet(BfdState.Down, your: 0));
        Assert.Equal(BfdState.Init, f.SessionState);
        Assert.Equal(1_000_000u, Sent(f, _now).DesiredMinTxInterval);
    }

    [Fact]
    public void EnteringUpStartsPollAndFinalEndsIt()
    {
        BfdStateMachine f = Fsm(txUs: 50_000);
        Rx(f, Packet(BfdState.Init));
        Assert.True(f.PollActive);
        Assert.Equal(_now, f.NextTx); // the Poll goes out at once
        ControlPacket p = Sent(f, _now);
        Assert.True(p.Poll);
        Assert.False(p.Final);
        Assert.Equal(50_000u, p.DesiredMinTxInterval);
        Rx(f, Packet(BfdState.Up, final: true));
        Assert.False(f.PollActive);
        Assert.False(Sent(f, _now).Poll);
        Assert.Equal(50_000u, f.TransmitIntervalUs);
    }

    [Fact]
    public void IncreasedTxIntervalAppliesOnlyAfterFinal()
    {
        BfdStateMachine f = UpSession(txUs: 50_000);
        f.ChangeParameters(300_000, 50_000, 3, _now);
        Assert.True(f.PollActive);
        ControlPacket p = Sent(f, _now);
        Assert.True(p.Poll);
        Assert.Equal(300_000u, p.DesiredMinTxInterval);
        // RFC 5880 6.8.3: the actual interval MUST NOT change until the Poll Sequence terminates.
        Assert.Equal(50_000u, f.TransmitIntervalUs);
        Assert.InRange(f.NextTx - _now, 37_500_000, 50 * Ms);
        Rx(f, Packet(BfdState.Up, final: true));
        Assert.Equal(300_000u, f.TransmitIntervalUs);
        Assert.Equal(BfdState.Up, f.SessionState);
        Assert.Empty(_changes); // no flap
    }

    [Fact]
    public void ReducedRxIntervalKeepsOldDetectionTimeUntilFinal()
    {
        BfdStateMachine f = UpSession(rxUs: 300_000);
        Rx(f, Packet(BfdState.Up, tx: 10_000));
        Assert.Equal(3ul * 300_000, f.DetectionTimeUs);
        f.ChangeParameters(50_000, 20_000, 3, _now);
        Assert.Equal(20_000u, Sent(f, _now).RequiredMinRxInterval);
        Rx(f, Packet(BfdState.Up, tx: 10_000));
        Assert.Equal(3ul * 300_000, f.DetectionTimeUs); // previous value until the Final
        Rx(f, Packet(BfdState.Up, tx: 10_000, final: true));
        Assert.Equal(3ul * 20_000, f.DetectionTimeUs);
    }

    [Fact]
    public void IncreasedRxIntervalLengthensDetectionAtOnce()
    {
        BfdStateMachine f = UpSession(rxUs: 50_000);
        f.ChangeParameters(50_000, 500_000, 3, _now);
        Rx(f, Packet(BfdState.Up));
        Assert.Equal(3ul * 500_000, f.DetectionTimeUs);
    }

    [Fact]
    public void MultiplierChangeWhileUpPolls()
    {
        BfdStateMachine f = UpSession();
        f.ChangeParameters(50_000, 50_000, 5, _now);
        Assert.True(f.PollActive);
        Assert.Equal(5, Sent(f, _now).DetectMult);
    }

    [Fact]
    public void ReceivedPollIsAnsweredWithFinalAloneEvenWhilePolling()
    {
        BfdStateMachine f = UpSession();
        f.ChangeParameters(100_000, 50_000, 3, _now);
        Rx(f, Packet(BfdState.Up, poll: true));
        Assert.True(f.FinalPending);
        ControlPacket p = Sent(f, _now, periodic: false);
        Assert.True(p.Final);
        Assert.False(p.Poll); // RFC 5880 6.5: never both
        Assert.False(f.FinalPending);
        Assert.True(Sent(f, _now).Poll);
    }

    [Fact]
    public void RemoteDemandModeStopsPeriodicTransmissionWhileBothUp()
    {
        BfdStateMachine f = UpSession();
        Rx(f, Packet(BfdState.Up, demand: true));
        Assert.True(f.RemoteDemandMode);
        Assert.True(f.PeriodicTxSuppressed);
        Sent(f, _now);
        Assert.Equal(BfdStateMachine.Never, f.NextTx);
        // A Poll from the demand-mode peer is still answered.
        Rx(f, Packet(BfdState.Up, demand: true, poll: true));
        Assert.True(Sent(f, _now, periodic: false).Final);
        // Our own Poll Sequence is sent even so (RFC 5880 6.6).
        f.ChangeParameters(70_000, 50_000, 3, _now);
        Assert.False(f.PeriodicTxSuppressed);
    }

    [Fact]
    public void ZeroRemoteMinRxStopsPeriodicTransmission()
    {
        BfdStateMachine f = UpSession();
        Rx(f, Packet(BfdState.Up, rx: 0));
        Sent(f, _now);
        Assert.Equal(BfdStateMachine.Never, f.NextTx);
        Rx(f, Packet(BfdState.Up, rx: 50_000));
        Assert.Equal(_now, f.NextTx);
    }

    [Fact]
    public void ControlPlaneIndependentBitIsSentAndReported()
    {
        BfdStateMachine f = Fsm(c: true);
        Assert.True(Sent(f, _now).ControlPlaneIndependent);
        Rx(f, Packet(BfdState.Down, your: 0, c: true));
        Assert.True(f.RemoteControlPlaneIndependent);
        Rx(f, Packet(BfdState.Init, c: false));
        Assert.False(f.RemoteControlPlaneIndependent);
    }

    [Theory]
    [InlineData(3, 750, 1000)]
    [InlineData(1, 750, 900)]
    public void JitterStaysWithinRfc5880Section687(byte mult, int minPermille, int maxPermille)
    {
        BfdStateMachine f = Fsm(mult: mult, seed: 42);
        long min = long.MaxValue, max = 0;
        for (int i = 0; i < 20_000; i++)
        {
            long j = f.JitteredNs(100_000);
            min = Math.Min(min, j);
            max = Math.Max(max, j);
        }
        Assert.InRange(min, minPermille * 100_000L, (minPermille + 5) * 100_000L);
        Assert.InRange(max, (maxPermille - 5) * 100_000L, maxPermille * 100_000L);
    }

    [Fact]
    public void AuthSequenceKnownResetsAfterTwiceDetectionTime()
    {
        var cfg = BfdAuthentication.Create(BfdAuthType.KeyedMd5, 1, "k");
        var auth = new Authenticator(cfg, 1);
        BfdStateMachine f = Fsm(auth: auth);
        Rx(f, Packet(BfdState.Down, your: 0, auth: new Authenticator(cfg, 100)));
        Assert.True(auth.AuthSeqKnown);
        f.OnTimer(_now + (2 * (long)f.DetectionTimeUs * 1000) - 1);
        Assert.True(auth.AuthSeqKnown);
        f.OnTimer(_now + (2 * (long)f.DetectionTimeUs * 1000));
        Assert.False(auth.AuthSeqKnown);
    }
}
