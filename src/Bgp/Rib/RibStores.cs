using System.Runtime.CompilerServices;

namespace Netcore.Bgp.Rib;

/// <summary>
/// A growable array of structs in fixed-size chunks (2^14 entries): growing never copies entries and never
/// allocates one table-sized array, so a full table has no large resize peaks. Indices are stable.
/// </summary>
internal struct ChunkedArray<T>
    where T : struct
{
    private const int ChunkBits = 14, ChunkMask = (1 << ChunkBits) - 1;
    private T[][] _chunks;

    /// <summary>Entries handed out so far (the high-water mark; freed ones are the owner's business).</summary>
    public int Used { get; private set; }

    public ref T this[int i] => ref _chunks[i >> ChunkBits][i & ChunkMask];

    /// <summary>A fresh entry after the last one handed out (default value).</summary>
    public int Append()
    {
        _chunks ??= new T[16][];
        int i = Used++;
        int c = i >> ChunkBits;
        if (c == _chunks.Length) Array.Resize(ref _chunks, c * 2);
        _chunks[c] ??= new T[1 << ChunkBits];
        return i;
    }
}

/// <summary>
/// Interned attribute sets: one shared instance per distinct value, reference counted by the paths that
/// use it and released with the last one. Single-threaded (the RIB thread). The index is an open-addressed
/// table of ids (linear probing, backward-shift deletion) over the entries' stored hashes: 4-8 bytes per set
/// instead of a dictionary's ~28, and no table-sized entry arrays to copy while a full table arrives.
/// </summary>
internal sealed class RibAttributeStore
{
    internal struct Entry
    {
        public BgpPathAttributes? Value;
        /// <summary>The first export result (most sets are exported to one peer from one source), kept by BgpRib.Export.</summary>
        public ExportMemo First;
        /// <summary>Further export results (other target or source peers); unused slots have Target -1.</summary>
        public ExportMemo[]? Memo;
        public int Refs;
        /// <summary>Hash of <see cref="Value"/>; the next free id while the entry is free.</summary>
        public int Hash;
    }

    /// <summary>An export result for (target, source) at an epoch; Target -1 = none.</summary>
    internal struct ExportMemo
    {
        public BgpPathAttributes? Result;
        public int Target;
        public int Source;
        public int Epoch;
    }

    private ChunkedArray<Entry> _entries;
    private int[] _slots = new int[1024]; // id + 1, 0 = empty
    private int _count;
    private int _free = -1;
    private BgpPathAttributes? _lastRef;
    private int _lastId = -1;

    /// <summary>Live attribute sets.</summary>
    public int Count => _count;

    public BgpPathAttributes Get(int id) => At(id).Value!;

    public ref Entry At(int id) => ref _entries[id];

    public int RefCount(int id) => At(id).Refs;

    /// <summary>Returns the id of the interned equal value, adding one reference.</summary>
    public int Acquire(BgpPathAttributes value)
    {
        if (ReferenceEquals(value, _lastRef) && ReferenceEquals(At(_lastId).Value, value))
        {
            At(_lastId).Refs++;
            return _lastId;
        }
        int hash = value.GetHashCode();
        int mask = _slots.Length - 1;
        int i = hash & mask;
        int id;
        while (true)
        {
            int sl = _slots[i];
            if (sl == 0)
            {
                id = Add(value, hash);
                if (_count * 2 > _slots.Length) Grow();
                else _slots[i] = id + 1;
                break;
            }
            ref var e = ref At(sl - 1);
            if (e.Hash == hash && (ReferenceEquals(e.Value, value) || e.Value!.Equals(value)))
            {
                id = sl - 1;
                break;
            }
            i = (i + 1) & mask;
        }
        ref var found = ref At(id);
        found.Refs++;
        _lastRef = found.Value;
        _lastId = id;
        return id;
    }

    private int Add(BgpPathAttributes value, int hash)
    {
        int id;
        if (_free >= 0)
        {
            id = _free;
            _free = At(id).Hash;
        }
        else
        {
            id = _entries.Append();
        }
        At(id) = new Entry { Value = value, Hash = hash, First = new ExportMemo { Target = -1 } };
        _count++;
        return id;
    }

    /// <summary>Doubles the index and re-inserts every live id (the entries themselves never move).</summary>
    private void Grow()
    {
        var slots = new int[_slots.Length * 2];
        int mask = slots.Length - 1;
        for (int id = 0; id < _entries.Used; id++)
        {
            ref var e = ref At(id);
            if (e.Value is null) continue;
            int i = e.Hash & mask;
            while (slots[i] != 0) i = (i + 1) & mask;
            slots[i] = id + 1;
        }
        _slots = slots;
    }

    public void AddRef(int id) => At(id).Refs++;

    /// <summary>Drops one reference; the set is forgotten with the last.</summary>
    public void Release(int id)
    {
        ref var e = ref At(id);
        if (--e.Refs > 0) return;
        RemoveSlot(id, e.Hash);
        if (ReferenceEquals(_lastRef, e.Value)) { _lastRef = null; _lastId = -1; }
        e = new Entry { Hash = _free };
        _free = id;
        _count--;
    }

    private void RemoveSlot(int id, int hash)
    {
        int mask = _slots.Length - 1;
        int i = hash & mask;
        while (_slots[i] != id + 1) i = (i + 1) & mask;
        // backward-shift deletion: move later members of the cluster into the gap when their home allows
        int gap = i;
        int j = i;
        while (true)
        {
            j = (j + 1) & mask;
            int sl = _slots[j];
            if (sl == 0) break;
            int home = At(sl - 1).Hash & mask;
            // the entry at j may fill the gap when its home is not in (gap, j] (cyclically)
            bool inRange = gap <= j ? home > gap && home <= j : home > gap || home <= j;
            if (!inRange)
            {
                _slots[gap] = sl;
                gap = j;
            }
        }
        _slots[gap] = 0;
    }
}

/// <summary>One path of a prefix. Paths of a prefix form a singly linked list, best first.</summary>
internal struct PathEntry
{
    public const byte Stale = 1, Rejected = 2, Eligible = 4;

    public int Next;
    /// <summary>Attribute id after import policy; -1 when rejected (kept only pre-policy).</summary>
    public int Attr;
    /// <summary>Attribute id before import policy, or -1 when not kept.</summary>
    public int PreAttr;
    public int Source;
    /// <summary>The ADD-PATH id the peer sent (0 without).</summary>
    public uint RemoteId;
    /// <summary>Our stable path id (unique per prefix), used when sending with ADD-PATH (RFC 7911).</summary>
    public uint LocalId;
    /// <summary>Arrival order, for the order-dependent (non-deterministic MED) comparison.</summary>
    public uint Seq;
    public byte Flags;
}

/// <summary>Path slots in one growable array with a free list: no object per path.</summary>
internal sealed class RibPathStore
{
    private ChunkedArray<PathEntry> _entries;
    private int _free = -1;

    public int Count { get; private set; }

    public ref PathEntry this[int i] => ref _entries[i];

    public int Allocate()
    {
        int i;
        if (_free >= 0)
        {
            i = _free;
            _free = this[i].Next;
        }
        else
        {
            i = _entries.Append();
        }
        Count++;
        return i;
    }

    public void Free(int i)
    {
        this[i] = new PathEntry { Next = _free, Attr = -1, PreAttr = -1 };
        _free = i;
        Count--;
    }
}

/// <summary>
/// Routes waiting to be sent to one peer, coalesced per (prefix, path id): the RIB thread writes a batch
/// under the lock, the peer's sender takes the whole dictionary. A null value is a withdraw.
/// </summary>
internal sealed class RibOut
{
    private readonly SemaphoreSlim _signal = new(0, int.MaxValue);
    private int _signalled;

    public object Lock { get; } = new();

    public Dictionary<(BgpPrefix Prefix, uint PathId), BgpPathAttributes?> Pending { get; set; } = [];

    public void Signal()
    {
        if (Interlocked.Exchange(ref _signalled, 1) == 0)
            _signal.Release();
    }

    public async Task WaitAsync(CancellationToken ct)
    {
        await _signal.WaitAsync(ct).ConfigureAwait(false);
        Volatile.Write(ref _signalled, 0);
    }

    /// <summary>Takes what is pending (the caller gives back an empty dictionary to reuse).</summary>
    public Dictionary<(BgpPrefix Prefix, uint PathId), BgpPathAttributes?> Take(Dictionary<(BgpPrefix Prefix, uint PathId), BgpPathAttributes?> empty)
    {
        lock (Lock)
        {
            var p = Pending;
            Pending = empty;
            return p;
        }
    }

    public void Clear()
    {
        lock (Lock) Pending.Clear();
    }
}

/// <summary>
/// Prefix -> head path slot, as an open-addressed table (linear probing, backward-shift deletion) of
/// slot numbers into entries kept in fixed-size chunks: about 40 bytes per prefix, and growing never
/// copies the entries (only the 4-byte slot array is rebuilt), so a full table has no big resize peaks.
/// </summary>
internal sealed class PrefixTable
{
    private struct Entry
    {
        public BgpPrefix Key;
        public int Head;   // -1 for a free entry
        public int Hash;   // next free entry while free
    }

    private ChunkedArray<Entry> _entries;
    private int[] _slots = new int[1024]; // entry index + 1, 0 = empty
    private int _free = -1;

    public int Count { get; private set; }

    private ref Entry At(int i) => ref _entries[i];

    /// <summary>A reference to the head stored for <paramref name="p"/>, or a null reference. Stays valid across Add (entries never move).</summary>
    public ref int Find(BgpPrefix p)
    {
        int h = p.GetHashCode();
        int mask = _slots.Length - 1;
        for (int i = h & mask; ; i = (i + 1) & mask)
        {
            int s = _slots[i];
            if (s == 0) return ref Unsafe.NullRef<int>();
            ref var e = ref At(s - 1);
            if (e.Hash == h && e.Key.Equals(p)) return ref e.Head;
        }
    }

    /// <summary>Adds a prefix that is not in the table.</summary>
    public void Add(BgpPrefix p, int head)
    {
        if ((Count + 1) * 4 > _slots.Length * 3) Grow();
        int idx;
        if (_free >= 0)
        {
            idx = _free;
            _free = At(idx).Hash;
        }
        else
        {
            idx = _entries.Append();
        }
        ref var e = ref At(idx);
        e.Key = p;
        e.Head = head;
        e.Hash = p.GetHashCode();
        Insert(idx, e.Hash);
        Count++;
    }

    private void Insert(int idx, int h)
    {
        int mask = _slots.Length - 1;
        int i = h & mask;
        while (_slots[i] != 0) i = (i + 1) & mask;
        _slots[i] = idx + 1;
    }

    private void Grow()
    {
        var old = _slots;
        _slots = new int[old.Length * 2];
        foreach (int s in old)
            if (s != 0) Insert(s - 1, At(s - 1).Hash);
    }

    public bool Remove(BgpPrefix p)
    {
        int h = p.GetHashCode();
        int mask = _slots.Length - 1;
        int i = h & mask;
        while (true)
        {
            int s = _slots[i];
            if (s == 0) return false;
            ref var e = ref At(s - 1);
            if (e.Hash == h && e.Key.Equals(p)) break;
            i = (i + 1) & mask;
        }
        int idx = _slots[i] - 1;
        // backward-shift deletion: move later entries of the probe run into the hole when their home allows
        int j = i;
        while (true)
        {
            j = (j + 1) & mask;
            int s = _slots[j];
            if (s == 0) break;
            int home = At(s - 1).Hash & mask;
            bool stays = i <= j ? (i < home && home <= j) : (i < home || home <= j);
            if (!stays)
            {
                _slots[i] = s;
                i = j;
            }
        }
        _slots[i] = 0;
        ref var fe = ref At(idx);
        fe.Key = default;
        fe.Head = -1;
        fe.Hash = _free;
        _free = idx;
        Count--;
        return true;
    }

    public Enumerator GetEnumerator() => new(this);

    /// <summary>Enumerates (prefix, head) of the live entries; heads may be changed through <see cref="Find"/> meanwhile, but not prefixes added or removed.</summary>
    public struct Enumerator(PrefixTable table)
    {
        private int _i = -1;

        public readonly (BgpPrefix Prefix, int Head) Current
        {
            get
            {
                ref var e = ref table.At(_i);
                return (e.Key, e.Head);
            }
        }

        public bool MoveNext()
        {
            while (++_i < table._entries.Used)
                if (table.At(_i).Head >= 0) return true;
            return false;
        }
    }
}
