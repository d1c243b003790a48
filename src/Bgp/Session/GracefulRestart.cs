using Microsoft.Extensions.Logging;
using Netcore.Bgp.Capabilities;

namespace Netcore.Bgp
{
    /// <summary>
    /// Graceful restart (RFC 4724) settings of a <see cref="BgpSpeaker"/>: the capability advertised to
    /// every peer, whether this process is a restart (Restart State bit), the selection deferral of a
    /// restarting speaker and the helper-side stale-route timer.
    /// </summary>
    public sealed record BgpGracefulRestartOptions
    {
        /// <summary>
        /// Restart Time advertised (RFC 4724 3): how long peers keep our routes after our session
        /// drops. 12 bits of seconds (at most 4095 s). Default 120 s.
        /// </summary>
        public TimeSpan RestartTime { get; init; } = TimeSpan.FromSeconds(120);

        /// <summary>
        /// Set the Forwarding State bit for every family (RFC 4724 3): the forwarding plane keeps
        /// working while the control plane restarts, so helpers may keep using our routes. Default true.
        /// </summary>
        public bool ForwardingStatePreserved { get; init; } = true;

        /// <summary>
        /// This process is a restart: set the Restart State bit (RFC 4724 3) and defer our
        /// advertisements until the peers' End-of-RIB (RFC 4724 4.1). Default false.
        /// </summary>
        public bool IsRestarting { get; init; }

        /// <summary>
        /// A file that marks a running speaker: created on <see cref="BgpSpeaker.StartAsync"/>, deleted on a
        /// clean <see cref="BgpSpeaker.DisposeAsync"/>. When it already exists at start, the previous
        /// process died without a clean shutdown and this start is a restart (as with
        /// <see cref="IsRestarting"/>). Default null (not used).
        /// </summary>
        public string? MarkerFile { get; init; }

        /// <summary>
        /// Selection deferral timer of a restarting speaker (RFC 4724 4.1): the longest we wait for
        /// End-of-RIB from the peers before advertising anyway. Default 120 s.
        /// </summary>
        public TimeSpan SelectionDeferralTime { get; init; } = TimeSpan.FromSeconds(120);

        /// <summary>
        /// Helper side (RFC 4724 4.2): after a restarting peer is back, the longest its stale routes
        /// wait for its End-of-RIB before being removed. Default 360 s.
        /// </summary>
        public TimeSpan StalePathTime { get; init; } = TimeSpan.FromSeconds(360);

        /// <summary>
        /// Advertise the N bit (RFC 8538 2): with a peer that sets it too, a NOTIFICATION other than
        /// Cease / Hard Reset (and a hold timer expiry) keeps the routes as for a TCP failure, and an
        /// administrative shutdown or reset is sent as Cease / Hard Reset so that the peer flushes. Default true.
        /// </summary>
        public bool NotificationSupport { get; init; } = true;

        /// <summary>
        /// Long-lived graceful restart (RFC 9494): advertise the capability with this long-lived stale time
        /// for every family, so that helpers keep our routes (marked LLGR_STALE, least preferred) for this
        /// long after <see cref="RestartTime"/> ran out. At most 16,777,215 s. Default null: not advertised.
        /// </summary>
        public TimeSpan? LongLivedStaleTime { get; init; }

        internal void Validate()
        {
            // RFC 9494 3: the long-lived stale time is 24 bits of seconds.
            if (LongLivedStaleTime is { } ll && (ll < TimeSpan.Zero || ll.TotalSeconds > 0xFFFFFF))
                throw new ArgumentException("GracefulRestart.LongLivedStaleTime must be 0..16777215 seconds (RFC 9494 3)");
            // RFC 4724 3: Restart Time is 12 bits of seconds.
            if (RestartTime < TimeSpan.Zero || RestartTime.TotalSeconds > 4095)
                throw new ArgumentException("GracefulRestart.RestartTime must be 0..4095 seconds (RFC 4724 3)");
            if (SelectionDeferralTime < TimeSpan.Zero || StalePathTime < TimeSpan.Zero)
                throw new ArgumentException("GracefulRestart timers must not be negative");
        }
    }
}

namespace Netcore.Bgp.Session
{
    /// <summary>Graceful restart capability flags (RFC 4724 3, RFC 8538 2).</summary>
    internal static class GrFlags
    {
        public const byte RestartState = 0x8;       // RFC 4724 3: "R" bit
        public const byte Notification = 0x4;       // RFC 8538 2: "N" bit
        public const byte ForwardingState = 0x80;   // RFC 4724 3: per-AFI "F" bit
    }

    /// <summary>The routes kept for a peer, as the RIB sees them: what the helper side of graceful restart drives.</summary>
    internal interface IStaleRouteStore
    {
        /// <summary>Marks every route of <paramref name="family"/> learned from <paramref name="peer"/> stale (RFC 4724 4.2).</summary>
        void MarkStale(BgpPeer peer, BgpFamily family);

        /// <summary>Removes the routes of <paramref name="family"/> from <paramref name="peer"/> that are still stale.</summary>
        void SweepStale(BgpPeer peer, BgpFamily family);

        /// <summary>Removes every route learned from <paramref name="peer"/>.</summary>
        void RemovePeer(BgpPeer peer);
    }

    /// <summary>
    /// Speaker-wide graceful restart state of the restarting side (RFC 4724 4.1): whether this process
    /// is a restart, and the selection deferral that holds our advertisements until the peers'
    /// End-of-RIB markers (or the deferral timer).
    /// </summary>
    internal sealed class GracefulRestartCoordinator
    {
        private readonly BgpSpeaker _speaker;
        private readonly ILogger _log;
        private readonly TaskCompletionSource _deferral = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private volatile bool _restarting;

        public GracefulRestartCoordinator(BgpSpeaker speaker, BgpGracefulRestartOptions? options, ILogger log)
        {
            _speaker = speaker;
            _log = log;
            Options = options;
            options?.Validate();
            _restarting = options is not null && (options.IsRestarting || (options.MarkerFile is { } f && File.Exists(f)));
            if (!_restarting)
                _deferral.TrySetResult();
        }

        public BgpGracefulRestartOptions? Options { get; }

        /// <summary>True from the start of a restarted process until the selection deferral ends.</summary>
        public bool Restarting => _restarting;

        /// <summary>Completes when our routes may be advertised (at once unless restarting).</summary>
        public Task DeferralDone => _deferral.Task;

        /// <summary>The store the helper side marks and sweeps; set by the RIB when it is attached.</summary>
        public IStaleRouteStore? Store { get; set; }

        /// <summary>Creates the marker file and, when restarting, starts the selection deferral timer.</summary>
        public void Start(CancellationToken life)
        {
            if (Options?.MarkerFile is { } f)
            {
                Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(f))!);
                File.WriteAllText(f, $"{Environment.ProcessId}\n");
            }
            if (!_restarting)
                return;
            GrLog.Restarting(_log, Options!.SelectionDeferralTime.TotalSeconds);
            _ = Task.Delay(Options.SelectionDeferralTime, life).ContinueWith(t =>
            {
                if (!t.IsCanceled) End("selection deferral timer expired");
            }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }

        /// <summary>Deletes the marker file: the next start is a fresh one, not a restart.</summary>
        public void CleanShutdown()
        {
            if (Options?.MarkerFile is { } f)
            {
                try
                {
                    File.Delete(f);
                }
                catch (IOException)
                {
                    // nothing to remove
                }
            }
        }

        /// <summary>
        /// Re-checks the deferral condition (RFC 4724 4.1): End-of-RIB received from every configured
        /// peer, except peers whose session carries no graceful restart capability or whose own
        /// Restart State bit is set. Called on End-of-RIB and on session changes.
        /// </summary>
        public void Evaluate()
        {
            if (!_restarting) return;
            foreach (var p in _speaker.Peers)
            {
                if (p.IsDynamic || !p.IsStarted) continue;
                if (!p.GracefulRestartDeferralSatisfied()) return;
            }
            End("End-of-RIB received from every peer");
        }

        private void End(string why)
        {
            if (!_restarting) return;
            _restarting = false;
            GrLog.DeferralEnded(_log, why);
            _deferral.TrySetResult();
        }
    }

    /// <summary>
    /// Per-peer helper side of graceful restart (RFC 4724 4.2): keeps a restarting peer's routes as
    /// stale while its restart timer runs, sweeps them on End-of-RIB, on the stale timer, or at once
    /// when the new session lacks the capability or the Forwarding State bit.
    /// </summary>
    internal sealed class GracefulRestartHelper(BgpPeer peer, ILogger log)
    {
        private readonly HashSet<BgpFamily> _stale = [];
        private long _restartDeadlineMs;   // session down: peer's Restart Time running
        private long _staleDeadlineMs;     // session back: waiting for End-of-RIB

        /// <summary>Families whose routes are currently kept stale.</summary>
        public IReadOnlyCollection<BgpFamily> StaleFamilies
        {
            get
            {
                lock (_stale) return [.. _stale];
            }
        }

        private IStaleRouteStore? Store => peer.Speaker.GracefulRestart.Store;

        /// <summary>
        /// The established session ended. Returns true when the routes are kept (graceful restart)
        /// and false when they were flushed.
        /// </summary>
        /// <param name="session">The capability state of the session that ended.</param>
        /// <param name="notification">The NOTIFICATION sent or received, or null for a plain TCP failure.</param>
        public bool OnSessionDown(GracefulRestartSession session, BgpNotification? notification)
        {
            bool keep = session.PeerCapability is not null && (notification is null || (session.NotificationBitBoth && !IsHardReset(notification)));
            var store = Store;
            if (!keep)
            {
                // RFC 4724 4.2 only applies without a NOTIFICATION (RFC 8538 widens it when both set N).
                lock (_stale) _stale.Clear();
                _restartDeadlineMs = 0;
                _staleDeadlineMs = 0;
                store?.RemovePeer(peer);
                return false;
            }
            var cap = session.PeerCapability!;
            var families = cap.Families.Select(f => f.Family).Where(session.Families.Contains).ToList();
            lock (_stale)
            {
                // RFC 4724 4.2: routes of families not in the capability are deleted; the others are kept, marked stale.
                foreach (var f in session.Families.Where(f => !families.Contains(f)))
                    store?.SweepStale(peer, f);
                foreach (var f in families)
                {
                    store?.MarkStale(peer, f);
                    _stale.Add(f);
                }
            }
            // RFC 4724 4.2: the Restart Time received from the peer bounds how long we wait for the session.
            _restartDeadlineMs = Environment.TickCount64 + cap.RestartTime * 1000L;
            _staleDeadlineMs = 0;
            GrLog.HelperHolding(log, peer.ToString(), string.Join(",", families), cap.RestartTime);
            return true;
        }

        /// <summary>A new session is established (RFC 4724 4.2).</summary>
        public void OnSessionUp(GracefulRestartSession session)
        {
            _restartDeadlineMs = 0;
            List<BgpFamily> flush;
            lock (_stale)
            {
                if (_stale.Count == 0) return;
                // RFC 4724 4.2: without the capability in the new OPEN, or with the Forwarding State bit
                // clear for a family (or the family missing), the stale routes are deleted at once.
                flush = _stale.Where(f => session.PeerCapability is null
                    || !session.PeerCapability.Families.Any(x => x.Family == f && (x.Flags & GrFlags.ForwardingState) != 0)
                    || !session.Families.Contains(f)).ToList();
                foreach (var f in flush) _stale.Remove(f);
                _staleDeadlineMs = _stale.Count > 0 ? Environment.TickCount64 + (long)(peer.Speaker.GracefulRestart.Options?.StalePathTime ?? TimeSpan.FromSeconds(360)).TotalMilliseconds : 0;
            }
            foreach (var f in flush)
                Sweep(f, "new session without forwarding state");
        }

        /// <summary>End-of-RIB received for <paramref name="family"/>: the stale routes left are gone (RFC 4724 4.2).</summary>
        public void OnEndOfRib(BgpFamily family)
        {
            bool was;
            lock (_stale) was = _stale.Remove(family);
            if (was) Sweep(family, "End-of-RIB");
        }

        /// <summary>Restart and stale timers, called from the peer's 100 ms tick.</summary>
        public void Tick(long now)
        {
            string? why = null;
            if (_restartDeadlineMs != 0 && now >= _restartDeadlineMs)
            {
                _restartDeadlineMs = 0;
                why = "restart timer expired";
            }
            else if (_staleDeadlineMs != 0 && now >= _staleDeadlineMs)
            {
                _staleDeadlineMs = 0;
                why = "stale timer expired";
            }
            if (why is null) return;
            List<BgpFamily> all;
            lock (_stale)
            {
                all = [.. _stale];
                _stale.Clear();
            }
            foreach (var f in all)
                Sweep(f, why);
        }

        private void Sweep(BgpFamily f, string why)
        {
            GrLog.HelperSweep(log, peer.ToString(), f, why);
            Store?.SweepStale(peer, f);
        }

        private static bool IsHardReset(BgpNotification n) =>
            n.Code == BgpErrorCode.Cease && n.Subcode == HardResetSubcode;

        /// <summary>RFC 8538 3: Cease subcode 9, Hard Reset.</summary>
        public const byte HardResetSubcode = 9;
    }

    /// <summary>What a session negotiated about graceful restart, kept on the connection.</summary>
    /// <param name="PeerCapability">The peer's capability, or null when it sent none.</param>
    /// <param name="Families">Families negotiated on the session.</param>
    /// <param name="NotificationBitBoth">Both sides set the N bit (RFC 8538).</param>
    internal sealed record GracefulRestartSession(GracefulRestartCapability? PeerCapability, IReadOnlyList<BgpFamily> Families, bool NotificationBitBoth)
    {
        /// <summary>The peer set the Restart State bit: it is restarting itself.</summary>
        public bool PeerRestarting => PeerCapability is { } c && (c.Flags & GrFlags.RestartState) != 0;

        /// <summary>Builds our capability for one peer (RFC 4724 3), or null when graceful restart is off for it.</summary>
        public static GracefulRestartCapability? Build(BgpPeerOptions o, GracefulRestartCoordinator gr)
        {
            var opts = gr.Options;
            TimeSpan? time = o.GracefulRestartTime ?? opts?.RestartTime;
            if (time is not { } t)
                return null;
            byte flags = 0;
            if (gr.Restarting) flags |= GrFlags.RestartState;
            if (opts?.NotificationSupport == true) flags |= GrFlags.Notification;
            byte afiFlags = opts is null || opts.ForwardingStatePreserved ? GrFlags.ForwardingState : (byte)0;
            return new GracefulRestartCapability(flags, (ushort)Math.Clamp(t.TotalSeconds, 0, 4095), o.Families.Select(f => (f, afiFlags)).ToList());
        }

        /// <summary>
        /// Our long-lived graceful restart capability (RFC 9494 3): per family the F bit and the long-lived
        /// stale time; sent only together with the graceful restart capability.
        /// </summary>
        public static LongLivedGracefulRestartCapability? BuildLongLived(BgpPeerOptions o, GracefulRestartCoordinator gr)
        {
            if (gr.Options is not { LongLivedStaleTime: { } stale } opts || Build(o, gr) is null)
                return null;
            byte afiFlags = opts.ForwardingStatePreserved ? GrFlags.ForwardingState : (byte)0;
            uint seconds = (uint)Math.Clamp(stale.TotalSeconds, 0, 0xFFFFFF);
            return new LongLivedGracefulRestartCapability(o.Families.Select(f => (f, afiFlags, seconds)).ToList());
        }
    }

    /// <summary>Graceful restart log messages (event ids 40-49).</summary>
    internal static partial class GrLog
    {
        [LoggerMessage(40, LogLevel.Information, "BGP graceful restart: this start is a restart; advertisements deferred until End-of-RIB from the peers (at most {Seconds}s)")]
        public static partial void Restarting(ILogger logger, double seconds);

        [LoggerMessage(41, LogLevel.Information, "BGP graceful restart: selection deferral ended ({Why}); advertising")]
        public static partial void DeferralEnded(ILogger logger, string why);

        [LoggerMessage(42, LogLevel.Information, "BGP peer {Peer}: graceful restart helper keeps its routes of {Families} as stale for up to {Seconds}s")]
        public static partial void HelperHolding(ILogger logger, string peer, string families, int seconds);

        [LoggerMessage(43, LogLevel.Information, "BGP peer {Peer}: stale routes of {Family} removed ({Why})")]
        public static partial void HelperSweep(ILogger logger, string peer, BgpFamily family, string why);

        [LoggerMessage(44, LogLevel.Warning, "BGP peer {Peer}: {Family} disabled for this session (RFC 4760 7 AFI/SAFI disable) after: {Reason}")]
        public static partial void AfiSafiDisabled(ILogger logger, string peer, BgpFamily family, string reason);
    }
}
