using System.Net;
using System.Runtime.CompilerServices;
using Netcore.Bgp.Rib;

namespace Netcore.Bgp.Tests.Rib;

/// <summary>The compact stores under the RIB.</summary>
public class RibStoreTests
{
    [Fact]
    public void Prefix_table_matches_a_dictionary_under_random_adds_and_removes()
    {
        var rnd = new Random(7);
        var table = new PrefixTable();
        var model = new Dictionary<BgpPrefix, int>();
        var pool = Enumerable.Range(0, 5000).Select(i => i % 3 == 0
            ? new BgpPrefix(IPAddress.Parse($"2001:db8:{i:x}::"), 48)
            : new BgpPrefix(new IPAddress([10, (byte)(i >> 8), (byte)i, 0]), 24 - i % 5)).Distinct().ToArray();
        for (int step = 0; step < 60_000; step++)
        {
            var p = pool[rnd.Next(pool.Length)];
            ref int head = ref table.Find(p);
            bool has = model.TryGetValue(p, out int expected);
            Assert.Equal(has, !Unsafe.IsNullRef(ref head));
            if (has) Assert.Equal(expected, head);
            switch (rnd.Next(3))
            {
                case 0 when !has:
                    table.Add(p, step);
                    model[p] = step;
                    break;
                case 1 when has:
                    Assert.True(table.Remove(p));
                    model.Remove(p);
                    break;
                case 2 when has:
                    head = step; // the reference writes through
                    model[p] = step;
                    break;
            }
            Assert.Equal(model.Count, table.Count);
        }
        var listed = new Dictionary<BgpPrefix, int>();
        foreach (var (p, h) in table) listed.Add(p, h);
        Assert.Equal(model.OrderBy(kv => kv.Key), listed.OrderBy(kv => kv.Key));
    }

    [Fact]
    public void Attribute_store_interns_equal_sets_and_forgets_them_with_their_last_reference()
    {
        // Equal values built separately (no shared instances), colliding hashes included, many grow steps,
        // and random releases that exercise the index's backward-shift deletion.
        var rnd = new Random(11);
        var store = new RibAttributeStore();
        var refs = new Dictionary<BgpPathAttributes, (int Id, int Count)>();
        BgpPathAttributes Make(int k) => new()
        {
            AsPath = AsPath.FromSequence(65000, (uint)(k % 700)),
            Med = (uint)(k / 700),
            Communities = k % 3 == 0 ? [new BgpCommunity(65000, (ushort)k)] : [],
            OriginatorId = k % 5 == 0 ? IPAddress.Parse("10.0.0.1") : null,
        };
        for (int step = 0; step < 80_000; step++)
        {
            int k = rnd.Next(6000);
            var v = Make(k);
            if (rnd.Next(3) > 0 || !refs.TryGetValue(v, out var held))
            {
                int id = store.Acquire(v);
                if (refs.TryGetValue(v, out var r))
                {
                    Assert.Equal(r.Id, id); // the same set, the same id
                    refs[v] = (id, r.Count + 1);
                }
                else
                {
                    refs[v] = (id, 1);
                }
                Assert.True(store.Get(id).Equals(v));
            }
            else
            {
                store.Release(held.Id);
                if (held.Count == 1) refs.Remove(v);
                else refs[v] = (held.Id, held.Count - 1);
            }
            Assert.Equal(refs.Count, store.Count);
        }
        foreach (var (v, (id, count)) in refs)
        {
            Assert.Equal(count, store.RefCount(id));
            Assert.Equal(id, store.Acquire(Make(0) with { AsPath = v.AsPath, Med = v.Med, Communities = v.Communities, OriginatorId = v.OriginatorId }));
        }
    }

    [Fact]
    public void Path_store_reuses_freed_slots_across_chunks()
    {
        var store = new RibPathStore();
        var ids = Enumerable.Range(0, 40_000).Select(_ => store.Allocate()).ToList();
        Assert.Equal(40_000, ids.Distinct().Count());
        for (int i = 0; i < ids.Count; i += 2) store.Free(ids[i]);
        Assert.Equal(20_000, store.Count);
        var again = Enumerable.Range(0, 20_000).Select(_ => store.Allocate()).ToHashSet();
        Assert.True(again.SetEquals(ids.Where((_, i) => i % 2 == 0)));
    }
}
