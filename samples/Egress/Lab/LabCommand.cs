using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Text.Json;
using Netcore.Egress.Daemon;

namespace Netcore.Egress.Lab;

/// <summary>
/// <c>lab</c>: builds the two-machine topology (<see cref="LabEnvironment"/>), waits until both
/// daemons answer /readyz, sends requests through each machine's proxy, prints where the server saw
/// each one from (the shared address and a port, and whose range the port is in), and each
/// machine's state from the REST API (its XDP counters: <c>forwarded</c> counts return packets
/// that landed on it for the other machine's ports), then removes everything, also on Ctrl-C and
/// SIGTERM.
/// </summary>
public static class LabCommand
{
    /// <summary>Runs the lab; returns the exit code (0: every request answered from its machine's range; 1: not; 130: interrupted).</summary>
    public static async Task<int> RunAsync(LabOptions options, bool hold, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(options);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        // Ctrl-C and SIGTERM cancel the run; the finally below removes the lab either way.
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, c =>
        {
            c.Cancel = true;
            Console.Error.WriteLine("lab: interrupted, removing the lab...");
            cts.Cancel();
        });
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            cts.Cancel();
        });
        LabEnvironment? lab = null;
        try
        {
            Console.WriteLine((options.Ipv6Only ? $"lab: building, IPv6 only: shared address {LabEnvironment.Shared6}" : $"lab: building: shared addresses {LabEnvironment.Shared} and {LabEnvironment.Shared6}") +
                $", machine A {LabEnvironment.RangeA}, machine B {LabEnvironment.RangeB}, " +
                (options.Bgp ? "router BIRD (ECMP route learned over BGP" + (options.Ipv6Only ? ", IPv6 sessions)" : ")") : "router static ECMP route") + $", XDP {options.XdpMode}");
            lab = await LabEnvironment.StartAsync(options, Console.Out, cts.Token).ConfigureAwait(false);
            Console.WriteLine($"lab: namespaces {lab.Prefix}{{router,a,b,server}}; daemons up (pids {lab.Daemons[0].Id}, {lab.Daemons[1].Id})");
            var api = new IPEndPoint(IPAddress.Loopback, LabEnvironment.ApiPort);
            for (int m = 0; m < 2; m++)
                await WaitReadyAsync(lab.Machines[m], api, cts.Token).ConfigureAwait(false);
            Console.WriteLine("lab: both machines answer /readyz 200" + (!options.Bgp ? "" : options.Ipv6Only
                ? $"; router next hops {string.Join(", ", await lab.NextHopsAsync(cts.Token, ipv6: true).ConfigureAwait(false))}"
                : $"; router next hops {string.Join(", ", await lab.NextHopsAsync(cts.Token).ConfigureAwait(false))} and {string.Join(", ", await lab.NextHopsAsync(cts.Token, ipv6: true).ConfigureAwait(false))}"));

            var server4 = new IPEndPoint(LabEnvironment.ServerAddress, LabEnvironment.ServerPort);
            IPEndPoint[] servers = options.Ipv6Only ? [new(LabEnvironment.ServerAddress6, LabEnvironment.ServerPort)] : [server4, new(LabEnvironment.ServerAddress6, LabEnvironment.ServerPort)];
            Console.WriteLine($"lab: {options.Requests} requests through each machine's proxy (CONNECT 127.0.0.1:{LabEnvironment.ProxyPort}) to " +
                string.Join($" and {options.Requests} to ", servers.Select(x => $"http://{x}/")) + ", a new connection each");
            Console.WriteLine("request  via  seen at the server                port owner");
            int bad = 0;
            var proxy = new IPEndPoint(IPAddress.Loopback, LabEnvironment.ProxyPort);
            for (int m = 0; m < 2; m++)
            {
                string name = m == 0 ? "A" : "B";
                for (int i = 1; i <= servers.Length * options.Requests; i++)
                {
                    var server = servers[(i - 1) / options.Requests];
                    string seen, owner;
                    try
                    {
                        var (status, body) = await LabEnvironment.HttpAsync(lab.Machines[m], proxy, "GET", "/", cts.Token, server).ConfigureAwait(false);
                        seen = status == 200 ? body.Trim() : $"HTTP {status}";
                        owner = Owner(seen);
                    }
                    catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException || e is OperationCanceledException && !cts.IsCancellationRequested)
                    {
                        seen = "failed: " + e.Message;
                        owner = "-";
                    }
                    if (owner != name)
                        bad++;
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{i,7}  {name,-3}  {seen,-32}  {owner}"));
                }
            }
            int total = 2 * servers.Length * options.Requests;
            Console.WriteLine(bad == 0
                ? $"lab: all {total} requests answered, each from {(options.Ipv6Only ? LabEnvironment.Shared6 : $"{LabEnvironment.Shared} or {LabEnvironment.Shared6}")} and a port of the machine it went through"
                : $"lab: {bad} of {total} requests failed or came from another machine's port");
            if (options.Ipv6Only)
            {
                // No shared IPv4 address: an IPv4 destination is refused (502), never sent from another address.
                var (status, _) = await LabEnvironment.HttpAsync(lab.Machines[0], proxy, "GET", "/", cts.Token, server4).ConfigureAwait(false);
                Console.WriteLine($"lab: CONNECT {server4} through A (no shared IPv4 address): HTTP {status}");
                if (status != 502)
                    bad++;
            }

            for (int m = 0; m < 2; m++)
            {
                var (_, state) = await LabEnvironment.HttpAsync(lab.Machines[m], api, "GET", "/api/v1/state", cts.Token).ConfigureAwait(false);
                using var doc = JsonDocument.Parse(state);
                var root = doc.RootElement;
                var c = root.GetProperty("counters");
                var p = root.GetProperty("proxy");
                var peers = string.Join(", ", root.GetProperty("peers").EnumerateArray().Select(x => $"{x.GetProperty("ports").GetString()} -> {x.GetProperty("mac").GetString()} (slot {x.GetProperty("slot").GetUInt32()})"));
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"machine {(m == 0 ? "A" : "B")}: ports {root.GetProperty("ports").GetString()}, peers {peers}; XDP forwarded {c.GetProperty("forwarded").GetUInt64()} (return packets for the other machine's ports, sent on to it), local {c.GetProperty("local").GetUInt64()}, passed {c.GetProperty("passed").GetUInt64()}, malformed {c.GetProperty("malformed").GetUInt64()}, bounced {c.GetProperty("bounced").GetUInt64()}; proxy tunnels {p.GetProperty("tunnels").GetInt64()}"));
            }
            if (hold)
            {
                Console.WriteLine($"lab: up (namespaces {lab.Prefix}*; REST API on 127.0.0.1:{LabEnvironment.ApiPort} in each machine, e.g. ip netns exec {lab.Machines[0]} curl -s 127.0.0.1:{LabEnvironment.ApiPort}/api/v1/state); Ctrl-C removes it");
                await Task.Delay(Timeout.Infinite, cts.Token).ConfigureAwait(false);
            }
            return bad == 0 ? 0 : 1;
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            return 130;
        }
        catch (Exception e) when (e is LabException or IOException or System.Net.Sockets.SocketException or JsonException or KeyNotFoundException
            or System.ComponentModel.Win32Exception or Netcore.Netlink.NetlinkException or Netcore.Xdp.BpfException)
        {
            Console.Error.WriteLine($"lab: {e.Message}");
            if (lab is not null)
                foreach (var d in lab.Daemons)
                    Console.Error.WriteLine($"--- daemon {d.Id} output:\n{d.Output}");
            return 1;
        }
        finally
        {
            if (lab is not null)
            {
                await lab.DisposeAsync().ConfigureAwait(false);
                Console.WriteLine("lab: removed");
            }
        }
    }

    /// <summary>A or B by the port of <c>ADDRESS:PORT</c> or <c>[ADDRESS]:PORT</c> (the shared addresses only), or "?".</summary>
    private static string Owner(string seen)
    {
        int colon = seen.LastIndexOf(':');
        if (colon < 0 || seen[..colon] != LabEnvironment.Shared && seen[..colon] != $"[{LabEnvironment.Shared6}]" ||
            !int.TryParse(seen.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port))
            return "?";
        return PortRange.Parse(LabEnvironment.RangeA, "a").Contains(port) ? "A" : PortRange.Parse(LabEnvironment.RangeB, "b").Contains(port) ? "B" : "?";
    }

    private static async Task WaitReadyAsync(string ns, IPEndPoint api, CancellationToken ct)
    {
        string last = "";
        for (int i = 0; i < 100; i++)
        {
            try
            {
                var (status, body) = await LabEnvironment.HttpAsync(ns, api, "GET", "/readyz", ct).ConfigureAwait(false);
                if (status == 200)
                    return;
                last = body.Trim();
            }
            catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException)
            {
                last = e.Message;
            }
            await Task.Delay(200, ct).ConfigureAwait(false);
        }
        throw new LabException($"{ns}: /readyz did not answer 200 in 20 s: {last}");
    }
}
