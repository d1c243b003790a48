using System.Diagnostics.Metrics;
using System.Net;

namespace Netcore.Bfd.Tests.Interop;

/// <summary>The UDP layer against packets crafted by a plain socket in the peer namespace.</summary>
public class SocketTests
{
    // Down, Detect Mult 3, My Discriminator 0x01020304, Your Discriminator 0, 1 s timers.
    private const string DownPacket = "2040031801020304000000000000f4240000f42400000000";

    private static void SendFromPeer(TestNetns ns, string from, string to, int ttl, int port = 3784) =>
        ns.Exec($"python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); " +
                $"s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, {ttl}); s.bind(('{from}', 50001)); " +
                $"s.sendto(bytes.fromhex('{DownPacket}'), ('{to}', {port}))\"");

    private static async Task WaitAsync(Func<bool> condition)
    {
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(20))
                throw new TimeoutException("condition not met within 20 s");
            await Task.Delay(20);
        }
    }

    [LinuxFact(Netns = true, Tools = ["python3"])]
    public async Task SingleHopAcceptsOnlyTtl255AndEverySessionHasItsOwnSourcePort()
    {
        using var pair = new Pair();
        long metricPackets = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) =>
        {
            if (i.Meter.Name == BfdHost.MeterName && i.Name == "bfd.packets.dropped")
                l.EnableMeasurementEvents(i);
        };
        listener.SetMeasurementEventCallback<long>((_, v, _, _) => Interlocked.Add(ref metricPackets, v));
        listener.Start();

        using var logs = new CapturingLoggerFactory();
        await using var host = new BfdHost(new BfdHostOptions { NetworkNamespace = pair.A.Name }, logs);
        using BfdSession s = host.OpenSession(new BfdSessionOptions
        {
            Peer = IPAddress.Parse(Pair.B4), LocalAddress = IPAddress.Parse(Pair.A4), Interface = "bfd0",
        });
        pair.B.Exec("ip addr add 10.77.0.3/24 dev bfd1 && ip addr add 10.77.0.4/24 dev bfd1");
        using BfdSession s3 = host.OpenSession(new BfdSessionOptions { Peer = IPAddress.Parse("10.77.0.3"), Interface = "bfd0" });
        using BfdSession s4 = host.OpenSession(new BfdSessionOptions { Peer = IPAddress.Parse("10.77.0.4"), Interface = "bfd0" });
        int[] ports = [s.SourcePort, s3.SourcePort, s4.SourcePort];
        Assert.All(ports, p => Assert.InRange(p, 49152, 65535)); // RFC 5881 4
        Assert.Equal(3, ports.Distinct().Count());

        // RFC 5881 5: TTL 64 is discarded (counted against the session), TTL 255 accepted.
        SendFromPeer(pair.B, Pair.B4, Pair.A4, ttl: 64);
        await WaitAsync(() => s.Counters.PacketsDropped == 1);
        Assert.Equal(BfdState.Down, s.State);
        SendFromPeer(pair.B, Pair.B4, Pair.A4, ttl: 255);
        await WaitAsync(() => s.State == BfdState.Init);
        Assert.Equal(0x01020304u, s.RemoteDiscriminator);
        Assert.Equal(1, s.Counters.PacketsReceived);
        // [LoggerMessage] events: 2 = discarded packet (debug), 1 = state change.
        Assert.Contains(logs.Entries, e => e.Id.Id == 2 && e.Message.Contains("RFC 5881 5", StringComparison.Ordinal));
        Assert.Contains(logs.Entries, e => e.Id.Id == 1 && e.Message.Contains("Down -> Init", StringComparison.Ordinal));
        listener.RecordObservableInstruments();
        Assert.True(Interlocked.Read(ref metricPackets) >= 1);

        // Multihop port: a single-hop-only session does not take packets arriving on 4784.
        SendFromPeer(pair.B, "10.77.0.3", Pair.A4, ttl: 255, port: 4784);
        await Task.Delay(200);
        Assert.Equal(BfdState.Down, s3.State);
    }

    [LinuxFact(Netns = true, Tools = ["python3"])]
    public async Task MultihopHonoursTheMinimumTtl()
    {
        using var pair = new Pair();
        await using var host = new BfdHost(new BfdHostOptions { NetworkNamespace = pair.A.Name });
        using BfdSession s = host.OpenSession(new BfdSessionOptions
        {
            Peer = IPAddress.Parse(Pair.B4), LocalAddress = IPAddress.Parse(Pair.A4), Multihop = true, MinimumTtl = 250,
        });
        SendFromPeer(pair.B, Pair.B4, Pair.A4, ttl: 249, port: 4784);
        await WaitAsync(() => s.Counters.PacketsDropped == 1);
        Assert.Equal(BfdState.Down, s.State);
        SendFromPeer(pair.B, Pair.B4, Pair.A4, ttl: 250, port: 4784);
        await WaitAsync(() => s.State == BfdState.Init);
    }
}
