using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Netcore.Bgp;
using Netcore.Bgp.Rpki;

namespace Netcore.Benchmarks.Bgp;

/// <summary>RPKI-RTR: a long PDU fuzz run, and the time a full load and an incremental update of many ROAs take.</summary>
public static class RtrFuzzTool
{
    [Tool("rtr-fuzz", "decode N mutated/random RPKI-RTR PDUs (default 10M); fails on any exception other than RpkiRtrException")]
    public static int Fuzz(string[] args)
    {
        long cases = args.Length > 0 ? long.Parse(args[0], CultureInfo.InvariantCulture) : 10_000_000;
        int seed = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 1;
        var rnd = new Random(seed);
        byte[][] valid =
        [
            RtrCodec.SerialNotify(1, 7, 9), RtrCodec.SerialQuery(1, 7, 9), RtrCodec.ResetQuery(0), RtrCodec.CacheResponse(1, 7),
            RtrCodec.Prefix(1, true, BgpRoa.Parse("192.0.2.0/24-28 AS65001")), RtrCodec.Prefix(0, false, BgpRoa.Parse("2001:db8::/32-48 AS65002")),
            RtrCodec.EndOfData(1, 7, 9, 1, 2, 3), RtrCodec.EndOfData(0, 7, 9, 0, 0, 0), RtrCodec.CacheReset(1),
            RtrCodec.RouterKey(1, true, new RpkiRouterKey(new byte[20], 1, [1, 2, 3])),
            RtrCodec.ErrorReport(1, RpkiRtrErrorCode.CorruptData, RtrCodec.ResetQuery(1), "text"),
        ];
        long ok = 0, rejected = 0;
        var buf = new byte[256];
        var sw = Stopwatch.StartNew();
        for (long i = 0; i < cases; i++)
        {
            byte[] src = valid[rnd.Next(valid.Length)];
            int len = src.Length;
            src.CopyTo(buf, 0);
            switch (rnd.Next(4))
            {
                case 0: for (int k = rnd.Next(1, 6); k > 0; k--) buf[rnd.Next(len)] = (byte)rnd.Next(256); break;
                case 1: len = rnd.Next(len + 1); break;
                case 2: len = rnd.Next(64); rnd.NextBytes(buf.AsSpan(0, len)); break;
                default: buf[rnd.Next(len)] ^= (byte)(1 << rnd.Next(8)); break;
            }
            try
            {
                RtrCodec.Decode(buf.AsSpan(0, len));
                ok++;
            }
            catch (RpkiRtrException)
            {
                rejected++;
            }
#pragma warning disable CA1031 // anything else is the failure this tool looks for
            catch (Exception e)
#pragma warning restore CA1031
            {
                Console.Error.WriteLine($"case {i}: {e.GetType().Name} for {Convert.ToHexString(buf, 0, len)}: {e.Message}");
                return 1;
            }
        }
        Console.WriteLine($"rtr-fuzz: {cases} cases in {sw.Elapsed.TotalSeconds:F1}s; decoded {ok}, rejected {rejected}, no other exception");
        return 0;
    }

    [Tool("rtr-load", "RPKI-RTR client: full load of N ROAs (default 500000) from a loopback cache, then an incremental update replacing 1%")]
    public static int Load(string[] args)
    {
        int n = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 500_000;
        return LoadAsync(n).GetAwaiter().GetResult();
    }

    private static BgpRoa Roa(int i) => i % 5 == 4
        ? new BgpRoa(new BgpPrefix(new IPAddress([0x20, 0x01, (byte)(i >> 16), (byte)(i >> 8), (byte)i, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), 40), 48, (uint)(i % 400_000) + 1)
        : new BgpRoa(new BgpPrefix(new IPAddress([(byte)(1 + (i >> 16) % 223), (byte)(i >> 8), (byte)i, 0]), 24), 24, (uint)(i % 60_000) + 1);

    private static async Task<int> LoadAsync(int n)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var ep = (IPEndPoint)listener.LocalEndpoint;
        await using var client = new RpkiRtrClient(new RpkiRtrClientOptions { Cache = ep });
        var full = new MemoryStream();
        full.Write(RtrCodec.CacheResponse(1, 1));
        for (int i = 0; i < n; i++) full.Write(RtrCodec.Prefix(1, true, Roa(i)));
        full.Write(RtrCodec.EndOfData(1, 1, 1, 3600, 600, 7200));
        int delta = Math.Max(1, n / 100);
        var inc = new MemoryStream();
        inc.Write(RtrCodec.CacheResponse(1, 1));
        for (int i = 0; i < delta; i++) inc.Write(RtrCodec.Prefix(1, false, Roa(i)));
        for (int i = n; i < n + delta; i++) inc.Write(RtrCodec.Prefix(1, true, Roa(i)));
        inc.Write(RtrCodec.EndOfData(1, 1, 2, 3600, 600, 7200));

        long before = GC.GetTotalMemory(forceFullCollection: true);
        var sw = Stopwatch.StartNew();
        client.Start();
        using var cache = await listener.AcceptTcpClientAsync();
        var s = cache.GetStream();
        var header = new byte[8];
        await s.ReadExactlyAsync(header);
        await s.WriteAsync(full.ToArray());
        await client.WaitForDataAsync();
        var tFull = sw.Elapsed;
        long after = GC.GetTotalMemory(forceFullCollection: true);
        sw.Restart();
        await s.WriteAsync(RtrCodec.SerialNotify(1, 1, 2));
        var query = new byte[12];
        await s.ReadExactlyAsync(query);
        await s.WriteAsync(inc.ToArray());
        while (client.Serial != 2) await Task.Delay(1);
        var tInc = sw.Elapsed;
        Console.WriteLine($"rtr-load: full load of {n} ROAs ({full.Length / 1024} KiB) in {tFull.TotalMilliseconds:F0} ms; " +
            $"incremental -{delta} +{delta} in {tInc.TotalMilliseconds:F0} ms; {client.Roas.Current.Count} held; " +
            $"managed heap +{(after - before) / 1024 / 1024} MiB after the load ({(after - before) / n} B per ROA: the client's set and the compiled table)");
        return client.Roas.Current.Count == n ? 0 : 1;
    }
}
