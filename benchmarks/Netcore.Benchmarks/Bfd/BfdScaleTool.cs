using System.Diagnostics;
using System.Globalization;
using System.Net;
using Netcore.Bfd;

namespace Netcore.Benchmarks.Bfd;

/// <summary>
/// The Netcore side of benchmarks/compare/bfd-scale.sh: opens one single-hop session per line of a
/// pairs file inside a namespace, waits until all are Up, prints READY; counts from the moment the
/// file CONTROL/start appears until CONTROL/stop appears, then prints one RESULT line with packet
/// counts, flaps and the diagnostics of the state changes seen in that window.
/// </summary>
public static class BfdScaleTool
{
    /// <summary>bfd-scale --netns NS --pairs FILE --interface DEV --interval-ms MS --mult M --control DIR [--ready-timeout S] [--realtime PRIO]</summary>
    [Tool("bfd-scale", "N BFD sessions for benchmarks/compare/bfd-scale.sh (prints READY, then RESULT)")]
    public static int Run(string[] args)
    {
        string Arg(string name, string? def = null)
        {
            int i = Array.IndexOf(args, name);
            return i >= 0 && i + 1 < args.Length ? args[i + 1] : def ?? throw new ArgumentException("missing " + name);
        }
        string netns = Arg("--netns");
        string[] pairs = File.ReadAllLines(Arg("--pairs")).Where(l => l.Length > 0).ToArray();
        string dev = Arg("--interface");
        var interval = TimeSpan.FromMilliseconds(int.Parse(Arg("--interval-ms"), CultureInfo.InvariantCulture));
        byte mult = byte.Parse(Arg("--mult", "3"), CultureInfo.InvariantCulture);
        string control = Arg("--control");
        var readyTimeout = TimeSpan.FromSeconds(double.Parse(Arg("--ready-timeout", "120"), CultureInfo.InvariantCulture));

        int rt = int.Parse(Arg("--realtime", "0"), CultureInfo.InvariantCulture);
        using var host = new BfdHost(new BfdHostOptions
        {
            NetworkNamespace = netns, EnableMultihop = false, EnableIPv6 = false, RealtimePriority = rt > 0 ? rt : null,
        });
        var sessions = new List<BfdSession>();
        foreach (string line in pairs)
        {
            string[] f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            sessions.Add(host.OpenSession(new BfdSessionOptions
            {
                LocalAddress = IPAddress.Parse(f[0]), Peer = IPAddress.Parse(f[1]), Interface = dev,
                DesiredMinTxInterval = interval, RequiredMinRxInterval = interval, DetectMultiplier = mult,
            }));
        }
        var sw = Stopwatch.StartNew();
        while (sessions.Any(s => s.State != BfdState.Up || s.PollInProgress))
        {
            if (sw.Elapsed > readyTimeout)
            {
                Console.WriteLine($"NOTREADY up={sessions.Count(s => s.State == BfdState.Up)}/{sessions.Count}");
                return 2;
            }
            Thread.Sleep(100);
        }
        Console.WriteLine($"READY sessions={sessions.Count} after={sw.Elapsed.TotalSeconds:F1}s");
        Console.Out.Flush();
        var downs = new System.Collections.Concurrent.ConcurrentDictionary<BfdDiagnostic, int>();
        using var watch = new CancellationTokenSource();
        foreach (BfdSession s in sessions)
            _ = Task.Run(async () =>
            {
                try
                {
                    await foreach (BfdStateChange c in s.WatchAsync(watch.Token))
                        if (c.OldState == BfdState.Up)
                            downs.AddOrUpdate(c.Diagnostic, 1, (_, n) => n + 1);
                }
                catch (OperationCanceledException)
                {
                }
            });
        while (!File.Exists(Path.Combine(control, "start")))
            Thread.Sleep(20);
        downs.Clear();
        BfdSessionCounters[] start = sessions.Select(s => s.Counters).ToArray();
        TimeSpan cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
        while (!File.Exists(Path.Combine(control, "stop")))
            Thread.Sleep(20);
        TimeSpan cpu1 = Process.GetCurrentProcess().TotalProcessorTime;
        BfdSessionCounters[] end = sessions.Select(s => s.Counters).ToArray();
        long sent = 0, received = 0, flaps = 0, notUp = 0;
        for (int i = 0; i < sessions.Count; i++)
        {
            sent += end[i].PacketsSent - start[i].PacketsSent;
            received += end[i].PacketsReceived - start[i].PacketsReceived;
            flaps += end[i].Flaps - start[i].Flaps;
            if (sessions[i].State != BfdState.Up)
                notUp++;
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"RESULT sent={sent} received={received} flaps={flaps} notup={notUp} cpu_us={(cpu1 - cpu0).Ticks / 10} down_diagnostics={string.Join(',', downs.Select(d => d.Key + ":" + d.Value))}"));
        watch.Cancel();
        Console.Out.Flush();
        foreach (BfdSession s in sessions)
            s.Dispose();
        return 0;
    }
}
