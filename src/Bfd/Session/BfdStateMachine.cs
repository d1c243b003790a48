using Netcore.Bfd.Packets;

namespace Netcore.Bfd.Session;

/// <summary>Outcome of <see cref="BfdStateMachine.Receive"/>: accepted or the rule that discarded the packet.</summary>
internal enum ReceiveResult : byte
{
    Accepted = 0,
    WrongDiscriminator,
    ZeroYourDiscriminatorNotDown,
    AuthMismatch,
    AuthFailed,
    AdminDownDiscard,
}

/// <summary>
/// The session state machine of RFC 5880 6.2 and the procedures of 6.8, as pure logic over a
/// monotonic clock in nanoseconds passed in by the caller: no I/O, no threads, no allocation.
/// Variable names follow the bfd.* state variables of RFC 5880 6.8.1.
/// </summary>
internal sealed class BfdStateMachine
{
    public const uint OneSecondUs = 1_000_000;
    public const long Never = long.MaxValue;

    private readonly Random _random;
    private Authenticator? _auth;

    // Configured values (µs).
    private uint _configDesiredMinTx;
    private uint _configRequiredMinRx;

    // Values used for local timing while a Poll Sequence is outstanding (RFC 5880 6.8.3).
    private uint _txTimingMinTx;
    private uint _detectRequiredMinRx;
    private long _authSeqResetDeadline = Never;

    public BfdStateMachine(uint localDiscriminator, uint desiredMinTxUs, uint requiredMinRxUs, byte detectMult,
        Authenticator? auth = null, bool controlPlaneIndependent = false, Random? random = null)
    {
        if (localDiscriminator == 0)
            throw new ArgumentOutOfRangeException(nameof(localDiscriminator), "RFC 5880 6.8.1: bfd.LocalDiscr MUST be nonzero.");
        ArgumentOutOfRangeException.ThrowIfZero(detectMult);
        ArgumentOutOfRangeException.ThrowIfZero(desiredMinTxUs);
        _random = random ?? Random.Shared;
        _auth = auth;
        LocalDiscr = localDiscriminator;
        DetectMult = detectMult;
        ControlPlaneIndependent = controlPlaneIndependent;
        _configDesiredMinTx = desiredMinTxUs;
        _configRequiredMinRx = requiredMinRxUs;
        ApplyAdvertised(pollIfUp: false);
        _txTimingMinTx = DesiredMinTxInterval;
        _detectRequiredMinRx = RequiredMinRxInterval;
    }

    /// <summary>Called on every state change: old state, new state, local diagnostic, time.</summary>
    public Action<BfdState, BfdState, BfdDiagnostic, long>? StateChanged { get; set; }

    // --- RFC 5880 6.8.1 state variables ------------------------------------------------
    public BfdState SessionState { get; private set; } = BfdState.Down;
    public BfdState RemoteSessionState { get; private set; } = BfdState.Down;
    public uint LocalDiscr { get; }
    public uint RemoteDiscr { get; private set; }
    public BfdDiagnostic LocalDiag { get; private set; }
    public BfdDiagnostic RemoteDiag { get; private set; }

    /// <summary>bfd.DesiredMinTxInterval as advertised (not less than 1 s while not Up, RFC 5880 6.8.3).</summary>
    public uint DesiredMinTxInterval { get; private set; }
    public uint RequiredMinRxInterval { get; private set; }

    /// <summary>bfd.RemoteMinRxInterval, initialized to 1 (RFC 5880 6.8.1).</summary>
    public uint RemoteMinRxInterval { get; private set; } = 1;
    public uint RemoteDesiredMinTxInterval { get; private set; }
    public byte RemoteDetectMult { get; private set; }
    public bool RemoteDemandMode { get; private set; }
    public bool RemoteControlPlaneIndependent { get; private set; }
    public byte DetectMult { get; private set; }
    public bool ControlPlaneIndependent { get; set; }
    public BfdAuthType AuthType => _auth?.Type ?? BfdAuthType.None;
    internal Authenticator? Auth => _auth;

    // --- Poll / Final (RFC 5880 6.5, 6.8.3) --------------------------------------------
    public bool PollActive { get; private set; }
    public bool FinalPending { get; private set; }

    // --- Timers ------------------------------------------------------------------------
    public long NextTx { get; private set; } = Never;
    public long DetectDeadline { get; private set; } = Never;
    public long LastRx { get; private set; } = Never;
    public long LastTx { get; private set; } = Never;

    /// <summary>The earliest time <see cref="OnTimer"/> has work to do.</summary>
    public long NextEvent => Math.Min(Math.Min(NextTx, DetectDeadline), _authSeqResetDeadline);

    /// <summary>The interval (µs) the local timing uses for transmission before jitter.</summary>
    public uint TransmitIntervalUs => Math.Max(_txTimingMinTx, RemoteMinRxInterval);

    /// <summary>RFC 5880 6.8.4: Detection Time (µs) in Asynchronous mode.</summary>
    public ulong DetectionTimeUs => (ulong)RemoteDetectMult * Math.Max(_detectRequiredMinRx, RemoteDesiredMinTxInterval);

    /// <summary>True while the local system must not send periodic packets (RFC 5880 6.8.7).</summary>
    public bool PeriodicTxSuppressed =>
        // "A system MUST NOT periodically transmit BFD Control packets if bfd.RemoteMinRxInterval is zero."
        RemoteMinRxInterval == 0
        // "if bfd.RemoteDemandMode is 1, bfd.SessionState is Up, and bfd.RemoteSessionState is Up,
        // Demand mode is active on the remote system and the local system MUST cease the periodic
        // transmission of BFD Control packets" (unless a Poll Sequence is being sent, 6.6).
        || (RemoteDemandMode && SessionState == BfdState.Up && RemoteSessionState == BfdState.Up && !PollActive);

    /// <summary>Sets the next transmission time (used to space the AdminDown packets sent on close).</summary>
    public void OverrideNextTx(long at) => NextTx = at;

    /// <summary>Starts transmitting: the first packet goes out at <paramref name="now"/>.</summary>
    public void Start(long now) => NextTx = now;

    /// <summary>Replaces the authentication (key rollover or type change).</summary>
    public void SetAuthentication(Authenticator? auth) => _auth = auth;

    /// <summary>
    /// Changes the timers. While Up this starts a Poll Sequence and applies the values as RFC 5880
    /// 6.8.3 requires: a larger transmit interval and a smaller receive interval only take effect
    /// locally once the Final arrives.
    /// </summary>
    public void ChangeParameters(uint desiredMinTxUs, uint requiredMinRxUs, byte detectMult, long now)
    {
        ArgumentOutOfRangeException.ThrowIfZero(detectMult);
        ArgumentOutOfRangeException.ThrowIfZero(desiredMinTxUs);
        _configDesiredMinTx = desiredMinTxUs;
        _configRequiredMinRx = requiredMinRxUs;
        bool multChanged = detectMult != DetectMult;
        DetectMult = detectMult;
        if (!ApplyAdvertised(pollIfUp: true) && multChanged && SessionState == BfdState.Up)
            PollActive = true;
        if (PollActive && NextTx > now)
            NextTx = now; // send the Poll now
    }

    /// <summary>
    /// RFC 5880 6.8.16: holds the session administratively down with <paramref name="diag"/>
    /// (Administratively Down by default), still transmitting so the peer learns of it.
    /// </summary>
    public void AdminDown(long now, BfdDiagnostic diag = BfdDiagnostic.AdministrativelyDown)
    {
        if (SessionState == BfdState.AdminDown)
            return;
        LocalDiag = diag;
        SetState(BfdState.AdminDown, now);
        DetectDeadline = Never;
        NextTx = now;
    }

    /// <summary>RFC 5880 6.8.16: leaves AdminDown for Down.</summary>
    public void AdminUp(long now)
    {
        if (SessionState != BfdState.AdminDown)
            return;
        SetState(BfdState.Down, now);
        NextTx = now;
    }

    /// <summary>
    /// Signals a diagnostic coming from outside the BFD session (RFC 5880 6.8.17/4.1: Forwarding
    /// Plane Reset, Path Down, Concatenated Path Down, Reverse Concatenated Path Down): takes the
    /// session Down with that diagnostic.
    /// </summary>
    public void SignalDown(BfdDiagnostic diag, long now)
    {
        LocalDiag = diag;
        if (SessionState is BfdState.Up or BfdState.Init)
            SetState(BfdState.Down, now);
        NextTx = now;
    }

    /// <summary>
    /// The reception procedure of RFC 5880 6.8.6 for a packet that passed <see cref="ControlPacket.TryRead"/>.
    /// <paramref name="raw"/> is the datagram (modified in place by authentication);
    /// <paramref name="rxTime"/> the kernel receive time, <paramref name="now"/> the processing time.
    /// </summary>
    public ReceiveResult Receive(Span<byte> raw, in ControlPacket p, long rxTime, long now)
    {
        // RFC 5880 6.8.6: "If the Your Discriminator field is nonzero, it MUST be used to select
        // the session ... If no session is found, the packet MUST be discarded."
        if (p.YourDiscriminator != 0 && p.YourDiscriminator != LocalDiscr)
            return ReceiveResult.WrongDiscriminator;
        // "If the Your Discriminator field is zero and the State field is not Down or AdminDown,
        // the packet MUST be discarded."
        if (p.YourDiscriminator == 0 && p.State is not (BfdState.Down or BfdState.AdminDown))
            return ReceiveResult.ZeroYourDiscriminatorNotDown;
        // "If the A bit is set and no authentication is in use (bfd.AuthType is zero), the packet
        // MUST be discarded." / "If the A bit is clear and authentication is in use, discard."
        if (p.AuthPresent != (_auth is not null))
            return ReceiveResult.AuthMismatch;
        // "If the A bit is set, the packet MUST be authenticated under the rules of section 6.7."
        if (_auth is not null && !_auth.Verify(raw, p))
            return ReceiveResult.AuthFailed;

        // "Set bfd.RemoteDiscr to the value of My Discriminator." "Set bfd.RemoteState to the
        // value of the State (Sta) field." "Set bfd.RemoteDemandMode to the value of the Demand (D)
        // bit." "Set bfd.RemoteMinRxInterval to the value of Required Min RX Interval."
        RemoteDiscr = p.MyDiscriminator;
        RemoteSessionState = p.State;
        RemoteDemandMode = p.Demand;
        uint oldRemoteMinRx = RemoteMinRxInterval;
        RemoteMinRxInterval = p.RequiredMinRxInterval;
        RemoteDesiredMinTxInterval = p.DesiredMinTxInterval;
        RemoteDetectMult = p.DetectMult;
        RemoteDiag = p.Diagnostic;
        RemoteControlPlaneIndependent = p.ControlPlaneIndependent;
        // "If the Required Min Echo RX Interval field is zero, the transmission of Echo packets, if
        // any, MUST cease." This implementation does not send Echo packets.

        // "If a Poll Sequence is being transmitted by the local system and the Final (F) bit in the
        // received packet is set, the Poll Sequence MUST be terminated." 6.8.3: the new values
        // take effect for local timing now.
        if (p.Final && PollActive)
        {
            PollActive = false;
            _txTimingMinTx = DesiredMinTxInterval;
            _detectRequiredMinRx = RequiredMinRxInterval;
        }

        // "Update the transmit interval as described in section 6.8.2." / "Update the Detection
        // Time as described in section 6.8.4."
        LastRx = rxTime;
        if (_auth is not null)
            _authSeqResetDeadline = rxTime + 2 * (long)DetectionTimeUs * 1000; // 6.8.1: 2x Detection Time
        if (SessionState != BfdState.AdminDown)
            DetectDeadline = rxTime + (long)DetectionTimeUs * 1000;
        if (oldRemoteMinRx == 0 && RemoteMinRxInterval != 0 && NextTx == Never)
            NextTx = now;
        else if (RemoteMinRxInterval != oldRemoteMinRx && LastTx != Never && NextTx != Never)
        {
            // RFC 5880 6.8.2/6.8.7: the transmit interval follows bfd.RemoteMinRxInterval. Larger:
            // never send faster than the remote now asks for. Smaller: the remote's Detection Time
            // shrinks with it (once its Poll Sequence ends), so a packet scheduled with the old,
            // longer interval is brought forward.
            long next = LastTx + JitteredNs(TransmitIntervalUs);
            if (RemoteMinRxInterval > oldRemoteMinRx ? NextTx < next : NextTx > next)
                NextTx = Math.Max(next, now);
        }

        // "If bfd.SessionState is AdminDown: Discard the packet."
        if (SessionState == BfdState.AdminDown)
            return ReceiveResult.AdminDownDiscard;

        if (p.State == BfdState.AdminDown)
        {
            // "If received state is AdminDown: If bfd.SessionState is not Down, Set bfd.LocalDiag to
            // 3 (Neighbor signaled session down), Set bfd.SessionState to Down."
            if (SessionState != BfdState.Down)
            {
                LocalDiag = BfdDiagnostic.NeighborSignaledSessionDown;
                SetState(BfdState.Down, now);
            }
        }
        else if (SessionState == BfdState.Down)
        {
            // "If bfd.SessionState is Down: If received State is Down, Set bfd.SessionState to Init.
            // Else if received State is Init, Set bfd.SessionState to Up."
            if (p.State == BfdState.Down)
                SetState(BfdState.Init, now);
            else if (p.State == BfdState.Init)
                SetState(BfdState.Up, now);
        }
        else if (SessionState == BfdState.Init)
        {
            // "Else if bfd.SessionState is Init: If received State is Init or Up, Set bfd.SessionState to Up."
            if (p.State is BfdState.Init or BfdState.Up)
                SetState(BfdState.Up, now);
        }
        else if (p.State == BfdState.Down)
        {
            // "Else (bfd.SessionState is Up): If received State is Down, Set bfd.LocalDiag to 3
            // (Neighbor signaled session down), Set bfd.SessionState to Down."
            LocalDiag = BfdDiagnostic.NeighborSignaledSessionDown;
            SetState(BfdState.Down, now);
        }

        // "If the Poll (P) bit is set, send a BFD Control packet to the remote system with the Poll
        // (P) bit clear, and the Final (F) bit set" (6.8.7: without respect to the transmit timer).
        if (p.Poll)
            FinalPending = true;
        return ReceiveResult.Accepted;
    }

    /// <summary>True when the Detection Time has passed (RFC 5880 6.8.4); the caller drains its receive queue first.</summary>
    public bool DetectExpired(long now) => now >= DetectDeadline;

    /// <summary>
    /// Runs the timers due at <paramref name="now"/>: detection (RFC 5880 6.8.4) and the
    /// bfd.AuthSeqKnown reset (6.8.1). Returns true when a periodic packet is due (6.8.7).
    /// </summary>
    public bool OnTimer(long now)
    {
        if (now >= DetectDeadline)
        {
            DetectDeadline = Never;
            // RFC 5880 6.8.1: "bfd.RemoteDiscr ... MUST be set to zero if the Detection Time
            // passes without the receipt of a valid BFD Control packet from the remote system."
            RemoteDiscr = 0;
            if (SessionState is BfdState.Init or BfdState.Up)
            {
                // RFC 5880 6.8.4: "if a period of a Detection Time passes without the receipt of a
                // valid, authenticated BFD packet from the remote system, this (local) session is
                // declared to be down": 6.2 timer expiry, diagnostic 1.
                LocalDiag = BfdDiagnostic.ControlDetectionTimeExpired;
                SetState(BfdState.Down, now);
            }
            RemoteSessionState = BfdState.Down;
            RemoteMinRxInterval = 1;
            RemoteDemandMode = false;
            if (NextTx == Never)
                NextTx = now;
        }
        if (now >= _authSeqResetDeadline)
        {
            _authSeqResetDeadline = Never;
            _auth?.ResetReceiveSequence();
        }
        return now >= NextTx;
    }

    /// <summary>
    /// Builds the next packet (RFC 5880 6.8.7) into <paramref name="dest"/> and returns its length.
    /// A pending Final is sent alone with F set and P clear (6.5: never both). When
    /// <paramref name="periodic"/>, the next periodic transmission is scheduled with jitter.
    /// </summary>
    public int BuildPacket(Span<byte> dest, long now, bool periodic)
    {
        bool final = FinalPending;
        FinalPending = false;
        int authLength = _auth?.SectionLength ?? 0;
        var p = new ControlPacket
        {
            Version = ControlPacket.CurrentVersion,
            Diagnostic = LocalDiag,
            State = SessionState,
            Poll = PollActive && !final,
            Final = final,
            ControlPlaneIndependent = ControlPlaneIndependent,
            AuthPresent = _auth is not null,
            Demand = false, // this implementation does not ask the peer for Demand mode
            Multipoint = false,
            DetectMult = DetectMult,
            Length = (byte)(ControlPacket.MandatoryLength + authLength),
            MyDiscriminator = LocalDiscr,
            YourDiscriminator = RemoteDiscr,
            DesiredMinTxInterval = DesiredMinTxInterval,
            RequiredMinRxInterval = RequiredMinRxInterval,
            RequiredMinEchoRxInterval = 0, // no Echo function
        };
        p.WriteMandatory(dest);
        _auth?.Sign(dest);
        LastTx = now;
        if (periodic || NextTx <= now)
            ScheduleNextTx(now);
        return p.Length;
    }

    /// <summary>Schedules the next periodic transmission from <paramref name="now"/> (RFC 5880 6.8.7).</summary>
    /// <remarks>
    /// The next time is counted from when this packet was due, not from when it went out, so a
    /// late wake-up of the timing thread does not stretch the following gap as well; when the
    /// packet was more than a quarter interval late, it is counted from now.
    /// </remarks>
    public void ScheduleNextTx(long now)
    {
        if (PeriodicTxSuppressed)
        {
            NextTx = Never;
            return;
        }
        uint interval = TransmitIntervalUs;
        long due = NextTx;
        long basis = due != Never && due <= now && now - due < (long)interval * 250 ? due : now;
        NextTx = Math.Max(basis + JitteredNs(interval), now + ((long)interval * 500)); // never under 50%
    }

    /// <summary>
    /// RFC 5880 6.8.7: "the interval between transmitted BFD Control packets MUST be reduced by a
    /// random value of 0 to 25%"; "If bfd.DetectMult is equal to 1, the interval ... MUST be no more
    /// than 90% of the negotiated transmission interval, and MUST be no less than 75%".
    /// </summary>
    public long JitteredNs(uint intervalUs)
    {
        int maxPercent = DetectMult == 1 ? 90 : 100;
        // Uniform in [75%, maxPercent%] with 0.1% resolution.
        int permille = 750 + _random.Next((maxPercent * 10) - 750 + 1);
        return (long)intervalUs * permille; // µs * permille / 1000 * 1000 ns
    }

    /// <summary>
    /// RFC 5880 6.8.3: sets the advertised values from the configuration (at least 1 s of
    /// DesiredMinTx while not Up). Returns true when a Poll Sequence was started.
    /// </summary>
    private bool ApplyAdvertised(bool pollIfUp)
    {
        uint desired = SessionState == BfdState.Up ? _configDesiredMinTx : Math.Max(OneSecondUs, _configDesiredMinTx);
        uint required = _configRequiredMinRx;
        bool changed = desired != DesiredMinTxInterval || required != RequiredMinRxInterval;
        DesiredMinTxInterval = desired;
        RequiredMinRxInterval = required;
        if (!changed)
            return false;
        if (SessionState == BfdState.Up && pollIfUp)
        {
            // "If bfd.DesiredMinTxInterval is increased and bfd.SessionState is Up, the actual
            // transmission interval used MUST NOT change until the Poll Sequence ... has terminated."
            // A decrease may take effect at once (sending faster never harms the peer's detection).
            if (desired < _txTimingMinTx)
                _txTimingMinTx = desired;
            // "If bfd.RequiredMinRxInterval is reduced and bfd.SessionState is Up, the previous value
            // ... MUST be used when calculating the Detection Time for the remote system until the
            // Poll Sequence ... has terminated." An increase lengthens detection at once.
            if (required > _detectRequiredMinRx)
                _detectRequiredMinRx = required;
            PollActive = true;
            return true;
        }
        // Not Up: values take effect at once.
        _txTimingMinTx = desired;
        _detectRequiredMinRx = required;
        return false;
    }

    private void SetState(BfdState next, long now)
    {
        BfdState old = SessionState;
        if (old == next)
            return;
        SessionState = next;
        if (next == BfdState.Up)
            LocalDiag = BfdDiagnostic.None;
        if (next != BfdState.Up)
            PollActive = false;
        // RFC 5880 6.8.3: the slow (>= 1 s) transmit rate applies whenever the session is not Up;
        // on entering Up the configured rate is negotiated with a Poll Sequence.
        ApplyAdvertised(pollIfUp: next == BfdState.Up);
        if (next != BfdState.Up)
        {
            _txTimingMinTx = DesiredMinTxInterval;
            _detectRequiredMinRx = RequiredMinRxInterval;
        }
        if (next == BfdState.Up && PollActive && NextTx > now)
            NextTx = now;
        StateChanged?.Invoke(old, next, LocalDiag, now);
    }
}
