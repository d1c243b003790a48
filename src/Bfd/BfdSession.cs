using System.Net;
using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Netcore.Bfd.Session;

namespace Netcore.Bfd;

/// <summary>
/// A lease on a BFD session opened with <see cref="BfdHost.OpenSession"/>. Several leases may
/// share one session; the session ends (AdminDown to the peer) when the last lease is disposed.
/// </summary>
public sealed class BfdSession : IDisposable
{
    private readonly BfdHost _host;
    private readonly SessionCore _core;
    private int _disposed;

    internal BfdSession(BfdHost host, SessionCore core)
    {
        _host = host;
        _core = core;
    }

    /// <summary>The peer address.</summary>
    public IPAddress Peer => _core.Peer;

    /// <summary>The options the session was created with.</summary>
    public BfdSessionOptions Options => _core.Options;

    /// <summary>The local state (bfd.SessionState).</summary>
    public BfdState State => _core.Fsm.SessionState;

    /// <summary>The peer's state as last reported (bfd.RemoteSessionState).</summary>
    public BfdState RemoteState => _core.Fsm.RemoteSessionState;

    /// <summary>The local diagnostic (bfd.LocalDiag).</summary>
    public BfdDiagnostic LocalDiagnostic => _core.Fsm.LocalDiag;

    /// <summary>The diagnostic in the last packet from the peer.</summary>
    public BfdDiagnostic RemoteDiagnostic => _core.Fsm.RemoteDiag;

    /// <summary>bfd.LocalDiscr.</summary>
    public uint LocalDiscriminator => _core.Fsm.LocalDiscr;

    /// <summary>bfd.RemoteDiscr (0 until the peer is heard).</summary>
    public uint RemoteDiscriminator => _core.Fsm.RemoteDiscr;

    /// <summary>The UDP source port of this session (RFC 5881 4: 49152-65535, unique per session).</summary>
    public int SourcePort => _core.SourcePort;

    /// <summary>The peer set the C bit: its BFD does not share fate with its control plane (RFC 5880 4.1).</summary>
    public bool RemoteControlPlaneIndependent => _core.Fsm.RemoteControlPlaneIndependent;

    /// <summary>The peer asked for Demand mode (RFC 5880 6.6); periodic packets stop while both are Up.</summary>
    public bool RemoteDemandMode => _core.Fsm.RemoteDemandMode;

    /// <summary>A Poll Sequence is outstanding (RFC 5880 6.5).</summary>
    public bool PollInProgress => _core.Fsm.PollActive;

    /// <summary>The Detection Time in force (RFC 5880 6.8.4).</summary>
    public TimeSpan DetectionTime => TimeSpan.FromTicks((long)_core.Fsm.DetectionTimeUs * 10);

    /// <summary>The negotiated transmit interval before jitter (RFC 5880 6.8.2).</summary>
    public TimeSpan TransmitInterval => TimeSpan.FromTicks((long)_core.Fsm.TransmitIntervalUs * 10);

    /// <summary>Counters since the session was created.</summary>
    public BfdSessionCounters Counters => _core.Counters;

    /// <summary>
    /// State changes from now on, in order, until <paramref name="cancellationToken"/> is cancelled
    /// or the session ends. Each enumeration has its own buffer.
    /// </summary>
    public async IAsyncEnumerable<BfdStateChange> WatchAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        Channel<BfdStateChange> ch = _core.Subscribe();
        try
        {
            while (await ch.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                while (ch.Reader.TryRead(out BfdStateChange c))
                    yield return c;
        }
        finally
        {
            _core.Unsubscribe(ch);
        }
    }

    /// <summary>Waits until the session is in <paramref name="state"/>; returns at once when it already is.</summary>
    public async Task WaitForStateAsync(BfdState state, CancellationToken cancellationToken = default)
    {
        Channel<BfdStateChange> ch = _core.Subscribe();
        try
        {
            if (State == state)
                return;
            while (await ch.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
                while (ch.Reader.TryRead(out BfdStateChange c))
                    if (c.NewState == state)
                        return;
            throw new ObjectDisposedException(nameof(BfdSession), "The session ended before reaching " + state + ".");
        }
        finally
        {
            _core.Unsubscribe(ch);
        }
    }

    /// <summary>
    /// Changes the timers of the (shared) session. While Up this runs a Poll Sequence and applies
    /// the new values as RFC 5880 6.8.3 requires, without taking the session down.
    /// </summary>
    public Task ChangeParametersAsync(TimeSpan desiredMinTxInterval, TimeSpan requiredMinRxInterval, byte detectMultiplier, CancellationToken cancellationToken = default)
    {
        uint tx = BfdSessionOptions.ToMicroseconds(desiredMinTxInterval, nameof(desiredMinTxInterval));
        uint rx = requiredMinRxInterval <= TimeSpan.Zero ? 0 : BfdSessionOptions.ToMicroseconds(requiredMinRxInterval, nameof(requiredMinRxInterval));
        ArgumentOutOfRangeException.ThrowIfZero(detectMultiplier);
        cancellationToken.ThrowIfCancellationRequested();
        return _host.Engine.InvokeAsync(() =>
        {
            _core.Fsm.ChangeParameters(tx, rx, detectMultiplier, Io.BfdEngine.Now());
            _host.Engine.Reschedule(_core);
        }).WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Replaces the authentication of the session (RFC 5880 6.7), e.g. to roll keys: configure the
    /// new key next to the old one, switch <see cref="BfdAuthentication.TransmitKeyId"/>, then drop the old key.
    /// The receive sequence state is kept when the type does not change.
    /// </summary>
    public Task SetAuthenticationAsync(BfdAuthentication? authentication, CancellationToken cancellationToken = default)
    {
        authentication?.Validate();
        cancellationToken.ThrowIfCancellationRequested();
        return _host.Engine.InvokeAsync(() =>
        {
            Packets.Authenticator? old = _core.Fsm.Auth;
            Packets.Authenticator? next = authentication is null || authentication.Type == BfdAuthType.None ? null
                : new Packets.Authenticator(authentication, old?.XmitAuthSeq ?? (uint)Random.Shared.NextInt64(0, uint.MaxValue));
            if (next is not null && old is not null && old.Type == next.Type)
                next.CopyReceiveState(old);
            _core.Fsm.SetAuthentication(next);
        }).WaitAsync(cancellationToken);
    }

    /// <summary>
    /// Takes the session Down with a diagnostic from outside BFD (RFC 5880 4.1: Forwarding Plane
    /// Reset, Path Down, Concatenated Path Down, Reverse Concatenated Path Down) or holds it
    /// AdminDown (<see cref="BfdDiagnostic.AdministrativelyDown"/>, RFC 5880 6.8.16).
    /// </summary>
    public Task SignalDownAsync(BfdDiagnostic diagnostic, CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return _host.Engine.InvokeAsync(() =>
        {
            long now = Io.BfdEngine.Now();
            if (diagnostic == BfdDiagnostic.AdministrativelyDown)
                _core.Fsm.AdminDown(now);
            else
                _core.Fsm.SignalDown(diagnostic, now);
            _host.Engine.Reschedule(_core);
        }).WaitAsync(cancellationToken);
    }

    /// <summary>Leaves AdminDown (RFC 5880 6.8.16) for Down, so the session can come up again.</summary>
    public Task AdminUpAsync(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        return _host.Engine.InvokeAsync(() =>
        {
            _core.Fsm.AdminUp(Io.BfdEngine.Now());
            _host.Engine.Reschedule(_core);
        }).WaitAsync(cancellationToken);
    }

    /// <summary>Releases this lease; the last one ends the session with AdminDown to the peer.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
            _host.Release(_core);
    }
}
