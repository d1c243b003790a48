using Netcore.Bgp.Rpki;

namespace Netcore.Bgp.Tests.Rpki;

/// <summary>The client's protocol behaviour (RFC 8210 5-8, 12) against a scripted cache on in-memory pipes.</summary>
public class RtrClientTests(ITestOutputHelper output)
{
    private static readonly BgpRoa A = BgpRoa.Parse("192.0.2.0/24-28 AS65001");
    private static readonly BgpRoa B = BgpRoa.Parse("198.51.100.0/24 AS65002");
    private static readonly BgpRoa C = BgpRoa.Parse("2001:db8::/32-48 AS65003");
    private static readonly BgpRoa D = BgpRoa.Parse("203.0.113.0/24 AS65004");

    private static byte[] Ann(BgpRoa r, byte v = 1) => RtrCodec.Prefix(v, true, r);

    private static byte[] Wd(BgpRoa r, byte v = 1) => RtrCodec.Prefix(v, false, r);

    private static HashSet<BgpRoa> Held(RpkiRtrClient c) => [.. c.Roas.Current.Roas];

    private static void AssertHeld(RpkiRtrClient c, params BgpRoa[] expected)
    {
        var held = Held(c);
        Assert.True(held.SetEquals(expected), $"held {string.Join(", ", held)}; expected {string.Join(", ", expected)}");
    }

    private RpkiRtrClient Client(FakeCache cache, Func<RpkiRtrClientOptions, RpkiRtrClientOptions>? tweak = null)
    {
        var c = new RpkiRtrClient(cache.Options(tweak), new TestLoggerFactory(output));
        c.Start();
        return c;
    }

    /// <summary>Connects and completes a full load of <paramref name="roas"/> (session 7, serial 1).</summary>
    private static async Task<CacheConnection> LoadAsync(FakeCache cache, RpkiRtrClient client, params BgpRoa[] roas)
    {
        var conn = await cache.AcceptAsync();
        await conn.ExpectAsync(RtrPduType.ResetQuery);
        await conn.AnswerAsync(1, 7, 1, roas.Select(r => Ann(r)));
        await client.WaitForDataAsync().WaitAsync(TimeSpan.FromSeconds(10));
        return conn;
    }

    private static async Task Eventually(Func<bool> probe, string what, int seconds = 10)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (!probe())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException(what);
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task Full_load_then_serial_notify_brings_an_incremental_update()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var updates = new List<RpkiRtrUpdatedEventArgs>();
        client.Updated += (_, e) => { lock (updates) updates.Add(e); };
        var conn = await cache.AcceptAsync();
        // RFC 8210 8.1: a new connection starts with a version 1 Reset Query
        Assert.Equal(Hex.Format(RtrCodec.ResetQuery(1)), Hex.Format((await conn.ReadAsync())!));
        await conn.AnswerAsync(1, 7, 1, [Ann(A), Ann(B), Ann(C)]);
        await client.WaitForDataAsync().WaitAsync(TimeSpan.FromSeconds(10));
        AssertHeld(client, A, B, C);
        Assert.Equal((ushort)7, client.SessionId);
        Assert.Equal(1u, client.Serial);
        Assert.Equal(BgpRpkiState.Valid, client.Roas.Current.Validate(BgpPrefix.Parse("192.0.2.0/26"), 65001));

        // RFC 8210 5.2 / 5.3: Serial Notify -> Serial Query with our session and serial
        await conn.SendAsync(RtrCodec.SerialNotify(1, 7, 2));
        var q = await conn.ExpectAsync(RtrPduType.SerialQuery);
        Assert.Equal(((ushort)7, 1u, (byte)1), (q.SessionId, q.Serial, q.Version));
        await conn.AnswerAsync(1, 7, 2, [Wd(B), Ann(D)]);
        await Eventually(() => client.Serial == 2, "serial 2");
        AssertHeld(client, A, C, D);
        await Eventually(() => { lock (updates) return updates.Count == 2; }, "two Updated events");
        lock (updates)
        {
            Assert.Equal([false, true], updates.Select(u => u.Incremental));
            Assert.Equal((1, 1, 3), (updates[1].Announced, updates[1].Withdrawn, updates[1].RoaCount));
        }
    }

    [Fact]
    public async Task Refresh_interval_sends_a_serial_query_and_intervals_come_from_the_cache()
    {
        var cache = new FakeCache();
        await using var client = Client(cache, o => o with { KeepIntervals = false });
        var conn = await cache.AcceptAsync();
        await conn.ExpectAsync(RtrPduType.ResetQuery);
        var started = DateTime.UtcNow;
        await conn.AnswerAsync(1, 7, 1, [Ann(A)], refresh: 1, retry: 1, expire: 600);
        var q = await conn.ExpectAsync(RtrPduType.SerialQuery, seconds: 15);
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromSeconds(0.9), "the query waited for the refresh interval");
        Assert.Equal(1u, q.Serial);
        // no change: an empty answer keeps the data and moves nothing
        await conn.AnswerAsync(1, 7, 1, [], refresh: 1, retry: 1, expire: 600);
        await conn.ExpectAsync(RtrPduType.SerialQuery, seconds: 15);
        AssertHeld(client, A);
    }

    [Fact]
    public async Task Duplicate_announcement_is_reported_and_the_update_is_not_applied()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var conn = await LoadAsync(cache, client, A, B);
        await conn.SendAsync(RtrCodec.SerialNotify(1, 7, 2));
        await conn.ExpectAsync(RtrPduType.SerialQuery);
        await conn.AnswerAsync(1, 7, 2, [Ann(D), Ann(A)]); // A is already held (RFC 8210 5.6)
        var sent = await conn.ReadUntilClosedAsync();
        var err = RtrCodec.Decode(Assert.Single(sent));
        Assert.Equal(RpkiRtrErrorCode.DuplicateAnnouncementReceived, err.ErrorCode);
        Assert.Equal(Hex.Format(Ann(A)), Hex.Format(err.ErrorPdu)); // RFC 8210 5.11: a copy of the erroneous PDU
        Assert.Equal(RpkiRtrErrorCode.DuplicateAnnouncementReceived, Assert.IsType<RpkiRtrException>(client.LastError).Code);
        AssertHeld(client, A, B); // D was not applied: half an update is never visible
        Assert.Equal(1u, client.Serial);
        // it reconnects after the retry interval with a Reset Query
        var again = await cache.AcceptAsync();
        await again.ExpectAsync(RtrPduType.ResetQuery);
    }

    [Fact]
    public async Task Withdrawal_of_an_unknown_record_is_reported()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var conn = await LoadAsync(cache, client, A);
        await conn.SendAsync(RtrCodec.SerialNotify(1, 7, 2));
        await conn.ExpectAsync(RtrPduType.SerialQuery);
        await conn.AnswerAsync(1, 7, 2, [Wd(B)]);
        var err = RtrCodec.Decode(Assert.Single(await conn.ReadUntilClosedAsync()));
        Assert.Equal(RpkiRtrErrorCode.WithdrawalOfUnknownRecord, err.ErrorCode);
        AssertHeld(client, A);
    }

    [Fact]
    public async Task Duplicate_inside_a_full_load_is_an_error_too()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var conn = await cache.AcceptAsync();
        await conn.ExpectAsync(RtrPduType.ResetQuery);
        await conn.AnswerAsync(1, 7, 1, [Ann(A), Ann(A)]);
        var err = RtrCodec.Decode(Assert.Single(await conn.ReadUntilClosedAsync()));
        Assert.Equal(RpkiRtrErrorCode.DuplicateAnnouncementReceived, err.ErrorCode);
        Assert.Equal(0, client.Roas.Current.Count);
        Assert.Null(client.Serial);
    }

    [Fact]
    public async Task Cache_reset_answer_leads_to_a_full_reload()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var conn = await LoadAsync(cache, client, A, B);
        await conn.SendAsync(RtrCodec.SerialNotify(1, 7, 9));
        await conn.ExpectAsync(RtrPduType.SerialQuery);
        await conn.SendAsync(RtrCodec.CacheReset(1)); // RFC 8210 8.3: no incremental update available
        await conn.ExpectAsync(RtrPduType.ResetQuery);
        await conn.AnswerAsync(1, 7, 9, [Ann(C), Ann(D)]);
        await Eventually(() => client.Serial == 9, "serial 9");
        AssertHeld(client, C, D);
    }

    [Fact]
    public async Task Serial_notify_before_the_first_end_of_data_is_ignored()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var conn = await cache.AcceptAsync();
        await conn.ExpectAsync(RtrPduType.ResetQuery);
        await conn.SendAsync(RtrCodec.SerialNotify(1, 7, 5)); // RFC 8210 7: ignored during startup
        await conn.AnswerAsync(1, 7, 5, [Ann(A)]);
        await client.WaitForDataAsync().WaitAsync(TimeSpan.FromSeconds(10));
        // nothing else was sent: the next PDU from the client is the answer to a later notify
        await conn.SendAsync(RtrCodec.SerialNotify(1, 7, 6));
        var q = await conn.ExpectAsync(RtrPduType.SerialQuery);
        Assert.Equal(5u, q.Serial);
    }

    [Fact]
    public async Task Version_1_refused_by_a_version_0_cache_downgrades_and_reconnects()
    {
        var cache = new FakeCache();
        await using var client = Client(cache, o => o with { RetryInterval = TimeSpan.FromSeconds(30) });
        var conn = await cache.AcceptAsync();
        Assert.Equal(1, (await conn.ExpectAsync(RtrPduType.ResetQuery)).Version);
        // RFC 8210 7 case 1: the cache answers with a version 0 Error Report "Unsupported Protocol Version" and closes
        await conn.SendAsync(RtrCodec.ErrorReport(0, RpkiRtrErrorCode.UnsupportedProtocolVersion, RtrCodec.ResetQuery(1), "v0 only"));
        await conn.CloseAsync();
        // the retry is immediate (not after the 30 s retry interval) and in version 0
        var v0 = await cache.AcceptAsync(seconds: 15);
        Assert.Equal(0, (await v0.ExpectAsync(RtrPduType.ResetQuery)).Version);
        await v0.AnswerAsync(0, 3, 1, [Ann(A, 0), Ann(C, 0)]);
        await client.WaitForDataAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, client.ProtocolVersion);
        AssertHeld(client, A, C);
        await v0.SendAsync(RtrCodec.SerialNotify(0, 3, 2));
        Assert.Equal(0, (await v0.ExpectAsync(RtrPduType.SerialQuery)).Version);
    }

    [Fact]
    public async Task Version_0_answer_to_a_version_1_query_downgrades_in_place()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var conn = await cache.AcceptAsync();
        await conn.ExpectAsync(RtrPduType.ResetQuery);
        // RFC 8210 7 case 2: the cache answers in version 0 (End of Data without intervals)
        await conn.AnswerAsync(0, 3, 1, [Ann(A, 0)]);
        await client.WaitForDataAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, client.ProtocolVersion);
        AssertHeld(client, A);
    }

    [Fact]
    public async Task Unexpected_version_after_negotiation_is_reported()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var conn = await LoadAsync(cache, client, A);
        // negotiated 1; a version 0 PDU now is Unexpected Protocol Version (RFC 8210 12, code 8)
        await conn.SendAsync(RtrCodec.SerialNotify(0, 7, 2));
        var err = RtrCodec.Decode(Assert.Single(await conn.ReadUntilClosedAsync()));
        Assert.Equal(RpkiRtrErrorCode.UnexpectedProtocolVersion, err.ErrorCode);
        Assert.Equal(1, client.ProtocolVersion);
    }

    [Fact]
    public async Task Version_0_client_speaks_rfc_6810()
    {
        var cache = new FakeCache();
        await using var client = Client(cache, o => o with { ProtocolVersion = 0 });
        var conn = await cache.AcceptAsync();
        Assert.Equal(Hex.Format(RtrCodec.ResetQuery(0)), Hex.Format((await conn.ReadAsync())!));
        // a Router Key PDU does not exist in version 0
        await conn.SendAsync(RtrCodec.CacheResponse(0, 1), Hex.Parse("00 09 0100 00000024 0102030405060708090a0b0c0d0e0f1011121314 0000fde9 30593013"));
        var err = RtrCodec.Decode(Assert.Single(await conn.ReadUntilClosedAsync()));
        Assert.Equal((0, RpkiRtrErrorCode.UnsupportedPduType), (err.Version, err.ErrorCode));
    }

    [Fact]
    public async Task Malformed_pdu_gets_a_corrupt_data_report_and_a_reconnect()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var conn = await cache.AcceptAsync();
        await conn.ExpectAsync(RtrPduType.ResetQuery);
        byte[] bad = Hex.Parse("01 04 0000 00000014 01 18 17 00 c0000200 0000fde9"); // max length 23 < 24
        await conn.SendAsync(RtrCodec.CacheResponse(1, 7), bad);
        var err = RtrCodec.Decode(Assert.Single(await conn.ReadUntilClosedAsync()));
        Assert.Equal(RpkiRtrErrorCode.CorruptData, err.ErrorCode);
        Assert.Equal(Hex.Format(bad), Hex.Format(err.ErrorPdu));
        await (await cache.AcceptAsync()).ExpectAsync(RtrPduType.ResetQuery);
    }

    [Fact]
    public async Task An_error_report_from_the_cache_is_not_answered_with_one()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var conn = await cache.AcceptAsync();
        await conn.ExpectAsync(RtrPduType.ResetQuery);
        await conn.SendAsync(RtrCodec.ErrorReport(1, RpkiRtrErrorCode.InternalError, [], "broken"));
        Assert.Empty(await conn.ReadUntilClosedAsync()); // closed, nothing sent (RFC 8210 5.11)
        var reported = Assert.IsType<RpkiRtrException>(client.LastError);
        Assert.Equal((RpkiRtrErrorCode.InternalError, true), (reported.Code, reported.FromCache));
        // a malformed Error Report is not answered either
        var again = await cache.AcceptAsync();
        await again.ExpectAsync(RtrPduType.ResetQuery);
        await again.SendAsync(Hex.Parse("01 0a 0000 00000012 00000000 00000001 6161"));
        Assert.Empty(await again.ReadUntilClosedAsync());
    }

    [Fact]
    public async Task No_data_available_keeps_the_connection_and_asks_again_after_the_retry_interval()
    {
        var cache = new FakeCache();
        await using var client = Client(cache, o => o with { RetryInterval = TimeSpan.FromMilliseconds(500) });
        var conn = await cache.AcceptAsync();
        await conn.ExpectAsync(RtrPduType.ResetQuery);
        await conn.SendAsync(RtrCodec.ErrorReport(1, RpkiRtrErrorCode.NoDataAvailable, RtrCodec.ResetQuery(1), "starting"));
        await conn.ExpectAsync(RtrPduType.ResetQuery, seconds: 15); // same connection
        await conn.AnswerAsync(1, 7, 1, [Ann(A)]);
        await client.WaitForDataAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(client.IsConnected);
        Assert.Equal(1, cache.Attempts);
    }

    [Fact]
    public async Task Data_expires_when_the_cache_stays_unreachable()
    {
        var cache = new FakeCache();
        await using var client = Client(cache, o => o with { ExpireInterval = TimeSpan.FromSeconds(3), RetryInterval = TimeSpan.FromMilliseconds(300) });
        var changes = 0;
        client.Roas.Changed += (_, _) => Interlocked.Increment(ref changes);
        // RFC 8210 6: the expire interval runs from the last successful load, which ends after this
        // stopwatch starts: while it reads under 3 s the data must still be there, whatever the load.
        var sinceBeforeLoad = System.Diagnostics.Stopwatch.StartNew();
        var conn = await LoadAsync(cache, client, A, C);
        cache.Refuse = true;
        await conn.CloseAsync();
        await Task.Delay(300);
        int kept = client.Roas.Current.Count;
        TimeSpan checkedAt = sinceBeforeLoad.Elapsed;
        output.WriteLine($"{kept} ROAs held {checkedAt.TotalSeconds:F2}s after the load began");
        if (checkedAt < TimeSpan.FromSeconds(3))
            Assert.Equal(2, kept); // kept while within the expire interval
        await Eventually(() => client.Roas.Current.Count == 0, "data dropped after the expire interval", 20);
        Assert.Null(client.Serial);
        Assert.Equal(2, Volatile.Read(ref changes));
        Assert.True(cache.Attempts >= 2, $"{cache.Attempts} connection attempts"); // retried while unreachable
        // the cache comes back: a full load
        cache.Refuse = false;
        var back = await cache.AcceptAsync();
        await back.ExpectAsync(RtrPduType.ResetQuery);
        await back.AnswerAsync(1, 8, 1, [Ann(B)]);
        await Eventually(() => client.Roas.Current.Count == 1, "reloaded");
    }

    [Fact]
    public async Task Session_id_mismatch_flushes_the_data()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var conn = await LoadAsync(cache, client, A, B);
        await conn.SendAsync(RtrCodec.SerialNotify(1, 7, 2));
        await conn.ExpectAsync(RtrPduType.SerialQuery);
        await conn.SendAsync(RtrCodec.CacheResponse(1, 99)); // RFC 8210 5.1: not our session
        var err = RtrCodec.Decode(Assert.Single(await conn.ReadUntilClosedAsync()));
        Assert.Equal(RpkiRtrErrorCode.CorruptData, err.ErrorCode);
        Assert.Equal(0, client.Roas.Current.Count);
        Assert.Null(client.SessionId);
    }

    [Fact]
    public async Task Router_keys_are_kept_and_withdrawn()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var k1 = new RpkiRouterKey(new byte[20], 65001, [1, 2, 3]);
        var k2 = new RpkiRouterKey(Enumerable.Repeat((byte)9, 20).ToArray(), 65002, [4, 5]);
        var conn = await cache.AcceptAsync();
        await conn.ExpectAsync(RtrPduType.ResetQuery);
        await conn.AnswerAsync(1, 7, 1, [RtrCodec.RouterKey(1, true, k1), Ann(A), RtrCodec.RouterKey(1, true, k2)]);
        await client.WaitForDataAsync().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(2, client.RouterKeys.Count);
        await conn.SendAsync(RtrCodec.SerialNotify(1, 7, 2));
        await conn.ExpectAsync(RtrPduType.SerialQuery);
        await conn.AnswerAsync(1, 7, 2, [RtrCodec.RouterKey(1, false, k1)]);
        await Eventually(() => client.Serial == 2, "serial 2");
        Assert.Equal([k2], client.RouterKeys);
        AssertHeld(client, A);
    }

    /// <summary>While updates that replace every ROA arrive, a reader only ever sees complete tables.</summary>
    [Fact]
    public async Task Readers_never_see_half_an_update()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var set1 = Enumerable.Range(0, 1000).Select(i => new BgpRoa(new BgpPrefix(new System.Net.IPAddress([10, (byte)(i >> 8), (byte)i, 0]), 24), 24, 65001)).ToArray();
        var set2 = Enumerable.Range(0, 1000).Select(i => new BgpRoa(new BgpPrefix(new System.Net.IPAddress([11, (byte)(i >> 8), (byte)i, 0]), 24), 24, 65002)).ToArray();
        var conn = await LoadAsync(cache, client, set1);
        using var stop = new CancellationTokenSource();
        var seen = new HashSet<(int Count, bool First, bool Second)>();
        var reader = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested)
            {
                var t = client.Roas.Current;
                bool first = t.Validate(set1[999].Prefix, 65001) == BgpRpkiState.Valid;
                bool second = t.Validate(set2[0].Prefix, 65002) == BgpRpkiState.Valid;
                seen.Add((t.Count, first, second));
            }
        });
        for (uint serial = 2; serial < 8; serial++)
        {
            var (from, to) = serial % 2 == 0 ? (set1, set2) : (set2, set1);
            await conn.SendAsync(RtrCodec.SerialNotify(1, 7, serial));
            await conn.ExpectAsync(RtrPduType.SerialQuery);
            await conn.AnswerAsync(1, 7, serial, [.. from.Select(r => Wd(r)), .. to.Select(r => Ann(r))]);
            await Eventually(() => client.Serial == serial, $"serial {serial}");
        }
        await stop.CancelAsync();
        await reader;
        Assert.Equal([(1000, false, true), (1000, true, false)], seen.OrderBy(s => s.First).ToArray());
    }

    [Fact]
    public async Task Serial_notify_during_an_answer_is_queried_right_after_its_end_of_data()
    {
        var cache = new FakeCache();
        await using var client = Client(cache);
        var conn = await LoadAsync(cache, client, A);
        await conn.SendAsync(RtrCodec.SerialNotify(1, 7, 2));
        await conn.ExpectAsync(RtrPduType.SerialQuery);
        await conn.SendAsync(RtrCodec.CacheResponse(1, 7), Ann(B), RtrCodec.SerialNotify(1, 7, 3), RtrCodec.EndOfData(1, 7, 2, 3600, 600, 7200));
        var q = await conn.ExpectAsync(RtrPduType.SerialQuery);
        Assert.Equal(2u, q.Serial);
        await conn.AnswerAsync(1, 7, 3, [Ann(C)]);
        await Eventually(() => client.Serial == 3, "serial 3");
        AssertHeld(client, A, B, C);
    }

    [Fact]
    public async Task A_cache_that_does_not_answer_is_dropped_after_the_response_timeout()
    {
        var cache = new FakeCache();
        await using var client = Client(cache, o => o with { ResponseTimeout = TimeSpan.FromMilliseconds(500) });
        var conn = await cache.AcceptAsync();
        await conn.ExpectAsync(RtrPduType.ResetQuery);
        Assert.Empty(await conn.ReadUntilClosedAsync()); // silence: the client gives up on the connection
        Assert.IsType<TimeoutException>(client.LastError);
        await (await cache.AcceptAsync()).ExpectAsync(RtrPduType.ResetQuery);
    }
}
