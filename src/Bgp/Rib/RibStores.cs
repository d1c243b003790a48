using System.Runtime.InteropServices;

namespace Netcore.Bgp.Rib;

/// <summary>
/// Interned attribute sets: one shared instance per distinct value, reference counted by the paths that
/// use it and released with the last one. Single-threaded (the RIB thread).
/// </summary>
internal sealed class RibAttributeStore
{
    internal struct Entry
    {
        public BgpPathAttributes? Value;
        public int Refs;
        public int NextFree;
        /// <summary>The first export result, inline (most sets are exported to one peer from one source).</summary>
        public ExportMemo First;
        public bool HasFirst;
        /// <summary>Further export results (other target or source peers).</summary>
        public ExportMemo[]? Memo;
        public int MemoCount;
    }

    internal struct ExportMemo
    {
        public int Target;
        public int Source;
        public int Epoch;
        public BgpPathAttributes? Result;
    }

    private readonly Dictionary<BgpPathAttributes, int> _index = [];
    private Entry[] _entries = new Entry[1024];
    private int _used;
    private int _free = -1;
    private BgpPathAttributes? _lastRef;
    private int _lastId = -1;

    /// <summary>Live attribute sets.</summary>
    public int Count => _index.Count;

    public BgpPathAttributes Get(int id) => _entries[id].Value!;

    public ref Entry At(int id) => ref _entries[id];

    public int RefCount(int id) => _entries[id].Refs;

    /// <summary>Returns the id of the interned equal value, adding one reference.</summary>
    public int Acquire(BgpPathAttributes value)
    {
        if (ReferenceEquals(value, _lastRef) && ReferenceEquals(_entries[_lastId].Value, value))
        {
            _entries[_lastId].Refs++;
            return _lastId;
        }
        ref int slot = ref CollectionsMarshal.GetValueRefOrAddDefault(_index, value, out bool exists);
        if (!exists)
        {
            int id;
            if (_free >= 0)
            {
                id = _free;
                _free = _entries[id].NextFree;
            }
            else
            {
                if (_used == _entries.Length) Array.Resize(ref _entries, _entries.Length * 2);
                id = _used++;
            }
            _entries[id] = new Entry { Value = value, Refs = 0, NextFree = -1 };
            slot = id;
        }
        _lastRef = _entries[slot].Value;
        _lastId = slot;
        _entries[slot].Refs++;
        return slot;
    }

    public void AddRef(int id) => _entries[id].Refs++;

    /// <summary>Drops one reference; the set is forgotten with the last.</summary>
    public void Release(int id)
    {
        ref var e = ref _entries[id];
        if (--e.Refs > 0) return;
        _index.Remove(e.Value!);
        if (ReferenceEquals(_lastRef, e.Value)) { _lastRef = null; _lastId = -1; }
        e = new Entry { NextFree = _free };
        _free = id;
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
    private PathEntry[] _paths = new PathEntry[4096];
    private int _used;
    private int _free = -1;

    public int Count { get; private set; }

    public ref PathEntry this[int i] => ref _paths[i];

    public int Allocate()
    {
        int i;
        if (_free >= 0)
        {
            i = _free;
            _free = _paths[i].Next;
        }
        else
        {
            if (_used == _paths.Length) Array.Resize(ref _paths, _paths.Length * 2);
            i = _used++;
        }
        Count++;
        return i;
    }

    public void Free(int i)
    {
        _paths[i] = new PathEntry { Next = _free, Attr = -1, PreAttr = -1 };
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
