using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Netcore.Bgp;
using Netcore.LoadBalancer.Api;
using Netcore.LoadBalancer.Control;
using Netcore.LoadBalancer.DataPlane;
using Netcore.LoadBalancer.Health;
using Netcore.LoadBalancer.Routing;
using Netcore.Netlink;
using Netcore.Samples;

namespace Netcore.LoadBalancer.Daemon;

/// <summary>
/// <c>serve</c>: the daemon. In the network namespace it is started in it loads (or adopts) the
/// XDP program on the interface, restores the configuration from SQLite, runs the health checks,
/// announces the VIPs over BGP and serves the REST API until SIGTERM/SIGINT; then it withdraws the
/// VIPs and leaves the program attached and pinned (unless --detach-on-exit), so traffic keeps
/// flowing while it restarts.
/// </summary>
internal static partial class ServeCommand
{
    /// <summary>The meta key that keeps an operator's drain (PUT /api/v1/node) across restarts.</summary>
    private const string DrainedKey = "node_drained";

    public static async Task<int> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        ServeOptions o;
        try
        {
            NetnsExec.IfRequested(args); // returns only without --netns
            o = ServeOptions.Parse(args);
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteLineAsync(e.Message + "\n" + ServeOptions.Usage).ConfigureAwait(false);
            return 2;
        }

        void ConfigureLogging(ILoggingBuilder b) => b.AddDaemonConsole(o.JsonLogs);
        using var loggerFactory = LoggerFactory.Create(ConfigureLogging);
        var log = loggerFactory.CreateLogger("Netcore.LoadBalancer");

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        void OnSignal(PosixSignalContext c)
        {
            c.Cancel = true;
            LogSignal(log, c.Signal.ToString());
            stop.Cancel();
        }
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);

        // The interface, its MTU and addresses, through Netcore.Netlink in this namespace.
        int ifindex, mtu;
        IPAddress? src4 = o.SourceV4, src6 = o.SourceV6, if4 = null, if6 = null;
        using (var nl = NetlinkClient.Open())
        {
            var link = await nl.TryGetLinkAsync(o.Interface, stop.Token).ConfigureAwait(false);
            if (link is null)
            {
                LogFatal(log, $"interface {o.Interface} does not exist in this network namespace");
                return 1;
            }
            ifindex = link.Index;
            mtu = o.Mtu ?? link.Mtu;
            await foreach (var a in nl.GetAddressesAsync(ifindex: ifindex, cancellationToken: stop.Token).ConfigureAwait(false))
            {
                if (a.Address.AddressFamily == AddressFamily.InterNetwork)
                    if4 ??= a.Address;
                else if (!a.Address.IsIPv6LinkLocal)
                    if6 ??= a.Address;
            }
            src4 ??= if4;
            src6 ??= if6;
        }

        string? fs = XdpDataPlane.FileSystemOf(o.PinDirectory);
        if (fs != "bpf")
        {
            LogFatal(log, $"--pin-dir {o.PinDirectory} is not on a bpf file system here (found {fs ?? "nothing"}); " +
                "'ip netns exec' remounts /sys privately and hides /sys/fs/bpf, so pins would die with the process: " +
                "start the daemon with 'nsenter --net=/run/netns/NAME' (or --netns NAME), or mount bpffs and pass --pin-dir");
            return 1;
        }
        XdpDataPlane dp;
        try
        {
            dp = XdpDataPlane.Open(new XdpDataPlaneOptions
            {
                PinDirectory = o.PinDirectory, Ifindex = ifindex, Mode = o.XdpMode, Logger = loggerFactory.CreateLogger("Netcore.LoadBalancer.DataPlane"),
            });
        }
        catch (Exception e) when (e is Xdp.BpfException or Xdp.BpfObjectException or IOException or UnauthorizedAccessException or InvalidOperationException)
        {
            LogFatal(log, $"loading the XDP program failed: {e.Message}");
            return 1;
        }
        using var _dp = dp;
        dp.SetConfig(LbConfig.Create(o.GatewayMac, src4, src6, (ushort)Math.Min(mtu, ushort.MaxValue), o.HashSeed, o.IcmpRate));
        var linkInfo = dp.Link!.GetInfo();
        LogDataPlane(log, o.Interface, ifindex, o.PinDirectory, dp.Adopted ? "adopted" : "attached", linkInfo.Id, linkInfo.ProgramId, src4, src6, mtu);

        using var store = new ConfigStore(o.Db);
        using var controller = new LbController(dp, store, loggerFactory.CreateLogger("Netcore.LoadBalancer.Control"), o.TableSize);

        VipAnnouncer? bgp = null;
        if (o.BgpEnabled)
        {
            bgp = new VipAnnouncer(new VipAnnouncerOptions
            {
                RouterId = o.BgpRouterId!, LocalAs = o.BgpLocalAs, Peers = o.BgpPeers,
                NextHopV4 = o.BgpNextHopV4 ?? if4, NextHopV6 = o.BgpNextHopV6 ?? if6,
                Bfd = o.Bfd, Interface = o.Interface,
                RouteAttributes = new BgpPathAttributes { Communities = [.. o.BgpCommunities], LargeCommunities = [.. o.BgpLargeCommunities], Med = o.BgpMed },
            }, loggerFactory);
            // A drained node stays drained across restarts (an operator's maintenance outlives them).
            if (store.GetMeta(DrainedKey, 0) != 0)
                await bgp.SetDrainedAsync(true, stop.Token).ConfigureAwait(false);
            await bgp.StartAsync(stop.Token).ConfigureAwait(false);
            var announcer = bgp;
            controller.VipsChanged += () => _ = announcer.SetVipsAsync(controller.Vips(), CancellationToken.None);
        }
        controller.Restore();

        HealthCheckLoop? nodeCheck = null;
        if (o.NodeCheck is not null && bgp is not null)
        {
            var probe = HealthProbe.ParseNodeCheck(o.NodeCheck, TimeSpan.FromMilliseconds(500));
            var announcer = bgp;
            nodeCheck = new HealthCheckLoop("node", probe, TimeSpan.FromSeconds(1), rise: 2, fall: 2,
                up => _ = announcer.SetNodeHealthyAsync(up, CancellationToken.None), log);
        }

        bool ready = false;
        var hooks = new ApiHooks
        {
            Ready = () => Volatile.Read(ref ready),
            Metrics = () => MetricsText.Render(controller, dp, bgp),
            Node = bgp is null ? null : async (drain, ct) =>
            {
                if (drain is bool dr)
                {
                    store.SetMeta(DrainedKey, dr ? 1 : 0);
                    await bgp.SetDrainedAsync(dr, ct).ConfigureAwait(false);
                }
                return new { drained = bgp.Drained, healthy = bgp.NodeHealthy, announced = bgp.Announced };
            },
            State = () => new
            {
                node = o.NodeName,
                @interface = o.Interface,
                ifindex,
                pinDirectory = o.PinDirectory,
                adopted = dp.Adopted,
                xdp = dp.Link!.GetInfo() is var li ? new { linkId = li.Id, programId = li.ProgramId, mode = o.XdpMode.ToString().ToLowerInvariant() } : null,
                tableSize = controller.TableSize,
                tableGeneration = controller.Generation,
                nodeHealthy = bgp?.NodeHealthy ?? true,
                nodeDrained = bgp?.Drained ?? false,
                services = controller.Services(),
                bgp = bgp is null ? null : new { peers = bgp.Peers(), announced = bgp.Announced },
            },
        };
        ApiServer api;
        try
        {
            api = await ApiServer.StartAsync(o.Api, o.Token, controller, hooks, ConfigureLogging, stop.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or InvalidOperationException)
        {
            LogFatal(log, $"cannot listen on {o.Api}: {e.Message}");
            return 1;
        }
        Volatile.Write(ref ready, true);
        LogListening(log, api.Address);

        try
        {
            await Task.Delay(Timeout.Infinite, stop.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        Volatile.Write(ref ready, false);
        if (nodeCheck is not null)
            await nodeCheck.DisposeAsync().ConfigureAwait(false);
        if (bgp is not null)
        {
            await bgp.WithdrawAllAsync(CancellationToken.None).ConfigureAwait(false);
            await bgp.DisposeAsync().ConfigureAwait(false);
        }
        await api.DisposeAsync().ConfigureAwait(false);
        if (o.DetachOnExit)
        {
            dp.DetachAndUnpin();
            LogStopped(log, "XDP program detached and pins removed");
        }
        else
        {
            LogStopped(log, $"XDP program left attached and pinned under {o.PinDirectory}");
        }
        return 0;
    }

    [LoggerMessage(EventId = 40, Level = LogLevel.Information, Message = "Data plane on {Interface} (ifindex {Ifindex}), pins {PinDirectory}: {How} link {LinkId} program {ProgramId}; outer source {Src4} / {Src6}, MTU {Mtu}")]
    private static partial void LogDataPlane(ILogger logger, string @interface, int ifindex, string pinDirectory, string how, uint linkId, uint programId, IPAddress? src4, IPAddress? src6, int mtu);

    [LoggerMessage(EventId = 41, Level = LogLevel.Information, Message = "listening on {Address}")]
    private static partial void LogListening(ILogger logger, Uri address);

    [LoggerMessage(EventId = 42, Level = LogLevel.Information, Message = "Stopping on {Signal}")]
    private static partial void LogSignal(ILogger logger, string signal);

    [LoggerMessage(EventId = 43, Level = LogLevel.Information, Message = "Stopped: {What}")]
    private static partial void LogStopped(ILogger logger, string what);

    [LoggerMessage(EventId = 44, Level = LogLevel.Critical, Message = "{Error}")]
    private static partial void LogFatal(ILogger logger, string error);
}
