using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Netcore.LoadBalancer.Lab;

/// <summary>
/// <c>lab</c>: builds the namespace topology (client, BIRD router with ECMP, two LB nodes running
/// the daemon, backends that decapsulate with XDP and answer directly), configures a service over
/// the REST API, sends requests through the VIP and prints who answered, the BGP state and the
/// counters; then removes everything (also on Ctrl-C). <c>lab --cleanup</c> removes leftovers of
/// labs whose process is gone.
/// </summary>
public static class LabCommand
{
    /// <summary>The usage text.</summary>
    public const string Usage = """
        usage: Netcore.LoadBalancer lab [--requests N] [--weights W1,W2,W3] [--encap gue|ipip]
                                        [--xdp-mode native|generic] [--parallel P] [--bfd] [--hold]
                                        [--backend-family ipv4|ipv6]
               Netcore.LoadBalancer lab --cleanup [--all]
          builds the lab (needs root, bird, birdc, ethtool, clang-built bpf/decap.o), sends N
          requests (default 400) to the VIP on new connections, prints which backend answered
          against the weights (default 100,200,100), the BGP state and the LB counters, and
          removes everything on exit (Ctrl-C included). --bfd runs BFD on the router sessions.
          --hold keeps the lab up until Ctrl-C. --backend-family ipv6 gives the LB nodes' and
          the backends' links IPv6 and configures the backends by their IPv6 addresses (the
          client and the VIP stay IPv4: IPv4 in IPv6 GUE or IPIP).
          --cleanup removes namespaces, bpffs folders and temporary folders named lb-PID-*
          whose PID is gone (--all: of every other process too).
        """;

    /// <summary>Runs the lab; returns the exit code (0: every request answered).</summary>
    public static async Task<int> RunAsync(string[] args, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(args);
        var options = new LabOptions();
        bool hold = false, cleanup = false, all = false;
        try
        {
            for (int i = 0; i < args.Length; i++)
            {
                string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
                switch (args[i])
                {
                    case "--requests": options = options with { Requests = ParsePositive(Next(), "--requests") }; break;
                    case "--parallel": options = options with { Parallelism = ParsePositive(Next(), "--parallel") }; break;
                    case "--weights":
                        options = options with { Weights = [.. Next().Split(',').Select(w => int.Parse(w, NumberStyles.None, CultureInfo.InvariantCulture))] };
                        if (options.Weights.Count is < 1 or > 9)
                            throw new ArgumentException("--weights: 1 to 9 backends");
                        break;
                    case "--encap":
                        options = options with { Encap = Next() };
                        if (options.Encap is not ("gue" or "ipip"))
                            throw new ArgumentException("--encap: gue or ipip");
                        break;
                    case "--xdp-mode":
                        options = options with { XdpMode = Next() };
                        if (options.XdpMode is not ("native" or "generic"))
                            throw new ArgumentException("--xdp-mode: native or generic");
                        break;
                    case "--backend-family":
                        options = options with
                        {
                            BackendFamily = Next() switch
                            {
                                "ipv4" => AddressFamily.InterNetwork,
                                "ipv6" => AddressFamily.InterNetworkV6,
                                _ => throw new ArgumentException("--backend-family: ipv4 or ipv6"),
                            },
                        };
                        break;
                    case "--hold": hold = true; break;
                    case "--bfd": options = options with { Bfd = true }; break;
                    case "--cleanup": cleanup = true; break;
                    case "--all": all = true; break;
                    default: throw new ArgumentException($"unknown option {args[i]}");
                }
            }
        }
        catch (Exception e) when (e is ArgumentException or FormatException or OverflowException)
        {
            Console.Error.WriteLine(e.Message);
            Console.Error.WriteLine(Usage);
            return 2;
        }

        if (cleanup)
        {
            LabCleanup.RemoveLeftovers(all, Console.Out);
            return 0;
        }

        // Ctrl-C and SIGTERM cancel the run; the finally below removes the lab either way.
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            Console.Error.WriteLine("lab: interrupted, removing the lab...");
            cts.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        using var term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            cts.Cancel();
        });
        LabEnvironment? lab = null;
        try
        {
            Console.WriteLine($"lab: building (weights {string.Join(':', options.Weights)}, encap {options.Encap}, XDP {options.XdpMode}{(options.BackendFamily == AddressFamily.InterNetworkV6 ? ", IPv6 backends" : "")})");
            lab = await LabEnvironment.StartAsync(options, Console.Out, cts.Token).ConfigureAwait(false);
            Console.WriteLine("lab: waiting for the router to learn the VIP from both LB nodes...");
            await lab.WaitForVipFromAsync([1, 2], TimeSpan.FromSeconds(60), cts.Token).ConfigureAwait(false);
            await PrintBgpAsync(lab, cts.Token).ConfigureAwait(false);

            Console.WriteLine($"lab: {options.Requests} requests to {LabEnvironment.VipEndPoint} from {lab.Topology.Client}, a new connection each");
            RequestTally tally = await lab.SendRequestsAsync(options.Requests, cts.Token).ConfigureAwait(false);
            PrintTally(lab, tally);
            await PrintCountersAsync(lab, cts.Token).ConfigureAwait(false);
            if (hold)
            {
                Console.WriteLine($"lab: up (namespaces {lab.Topology.Prefix}*); Ctrl-C removes it");
                await Task.Delay(Timeout.Infinite, cts.Token).ConfigureAwait(false);
            }
            return tally.Failed == 0 ? 0 : 1;
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            return 130;
        }
        catch (Exception e) when (e is LabCommandException or TimeoutException or IOException or HttpRequestException or System.ComponentModel.Win32Exception)
        {
            Console.Error.WriteLine($"lab: {e.Message}");
            if (lab is not null)
            {
                foreach (var n in lab.Nodes)
                    Console.Error.WriteLine($"--- {n.Namespace} output:\n{n.Output}");
                Console.Error.WriteLine($"--- bird output:\n{lab.Router.Output}");
            }
            return 1;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
            if (lab is not null)
            {
                await lab.DisposeAsync().ConfigureAwait(false);
                Console.WriteLine("lab: removed");
            }
        }
    }

    private static void PrintTally(LabEnvironment lab, RequestTally tally)
    {
        double total = lab.Options.Weights.Sum();
        Console.WriteLine("backend  weight  share    answered  share");
        for (int i = 0; i < lab.BackendNames.Count; i++)
        {
            string name = lab.BackendNames[i];
            int got = tally.ByBackend.GetValueOrDefault(name);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{name,-8} {lab.Options.Weights[i],6}  {100 * lab.Options.Weights[i] / total,5:F1}%  {got,8}  {(tally.Answered == 0 ? 0 : 100.0 * got / tally.Answered),5:F1}%"));
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"answered {tally.Answered}, failed {tally.Failed}; chi-square against the weights {tally.ChiSquare(lab.BackendNames, lab.Options.Weights):F2} ({lab.BackendNames.Count - 1} degrees of freedom)"));
        foreach (string e in tally.Errors)
            Console.WriteLine("  error: " + e);
    }

    private static async Task PrintBgpAsync(LabEnvironment lab, CancellationToken ct)
    {
        Console.WriteLine("--- router: birdc show protocols");
        Console.Write(await lab.Router.BirdcAsync("show protocols", ct).ConfigureAwait(false));
        Console.WriteLine($"--- router: birdc show route for {LabEnvironment.VipPrefix} all");
        Console.Write(await lab.Router.BirdcAsync($"show route for {LabEnvironment.VipPrefix} all", ct).ConfigureAwait(false));
        if (lab.Options.Bfd)
        {
            Console.WriteLine("--- router: birdc show bfd sessions");
            Console.Write(await lab.Router.BirdcAsync("show bfd sessions", ct).ConfigureAwait(false));
        }
        var hops = await lab.Router.KernelNextHopsAsync(System.Net.IPNetwork.Parse(LabEnvironment.VipPrefix), ct).ConfigureAwait(false);
        Console.WriteLine($"--- router kernel: {LabEnvironment.VipPrefix} via {string.Join(", ", hops)}");
    }

    private static async Task PrintCountersAsync(LabEnvironment lab, CancellationToken ct)
    {
        foreach (var n in lab.Nodes)
        {
            Console.WriteLine($"--- {n.Namespace}: /metrics");
            string metrics = await n.MetricsAsync(ct).ConfigureAwait(false);
            foreach (string line in metrics.Split('\n'))
            {
                if (line.Length > 0 && !line.StartsWith('#'))
                    Console.WriteLine("  " + line);
            }
            Console.WriteLine($"--- {n.Namespace}: /api/v1/state");
            var state = await n.StateAsync(ct).ConfigureAwait(false);
            Console.WriteLine(state?.ToJsonString(LabService.Indented));
        }
        Console.WriteLine("--- backends: decap.o counters (ipip, gue, passed) and connections from the client");
        for (int i = 1; i <= lab.BackendNames.Count; i++)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {lab.BackendNames[i - 1]}: ipip {lab.Xdp.DecapCount(i, LabXdp.DecapCounter.Ipip)}, gue {lab.Xdp.DecapCount(i, LabXdp.DecapCounter.Gue)}, passed {lab.Xdp.DecapCount(i, LabXdp.DecapCounter.Pass)}, sent on to a second hop {lab.Xdp.DecapCount(i, LabXdp.DecapCounter.Forwarded)}, client connections {lab.Servers[i - 1].ClientConnections}, health-check connections {lab.Servers[i - 1].OtherConnections}"));
        }
    }

    private static int ParsePositive(string s, string what) =>
        int.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture, out int v) && v > 0
            ? v
            : throw new ArgumentException($"{what}: '{s}' is not a positive integer");
}
