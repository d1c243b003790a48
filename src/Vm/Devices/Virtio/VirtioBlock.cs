using System.Buffers.Binary;
using Microsoft.Win32.SafeHandles;

namespace Netcore.Vm.Devices.Virtio;

/// <summary>
/// virtio-blk (virtio 1.1, 5.2) backed by a file: IN, OUT, FLUSH and GET_ID requests on one queue,
/// 512-byte sectors.
/// </summary>
public sealed class VirtioBlock : IVirtioDevice, IDisposable
{
    private const uint TypeIn = 0, TypeOut = 1, TypeFlush = 4, TypeGetId = 8;
    private const byte StatusOk = 0, StatusIoErr = 1, StatusUnsupp = 2;
    private const ulong FeatureRo = 1UL << 5, FeatureFlush = 1UL << 9;

    private readonly SafeFileHandle _file;
    private readonly byte[] _config = new byte[8];
    private readonly string _id;
    private IReadOnlyList<Virtqueue>? _queues;
    private Action<int>? _signal;

    /// <summary>Opens <paramref name="path"/> as the disk (its length is rounded down to whole sectors).</summary>
    public VirtioBlock(string path, bool readOnly = false)
    {
        _file = File.OpenHandle(path, FileMode.Open, readOnly ? FileAccess.Read : FileAccess.ReadWrite, FileShare.Read);
        ReadOnly = readOnly;
        SectorCount = (ulong)RandomAccess.GetLength(_file) / 512;
        BinaryPrimitives.WriteUInt64LittleEndian(_config, SectorCount); // config.capacity
        _id = Path.GetFileName(path);
    }

    /// <summary>Disk size in 512-byte sectors.</summary>
    public ulong SectorCount { get; }

    /// <summary>Writes are refused (VIRTIO_BLK_F_RO).</summary>
    public bool ReadOnly { get; }

    /// <inheritdoc />
    public uint DeviceId => 2;

    /// <inheritdoc />
    public ulong Features => FeatureFlush | (ReadOnly ? FeatureRo : 0);

    /// <inheritdoc />
    public IReadOnlyList<ushort> QueueSizes { get; } = [256];

    /// <inheritdoc />
    public ReadOnlySpan<byte> Config => _config;

    /// <inheritdoc />
    public void Activate(IReadOnlyList<Virtqueue> queues, Action<int> signalUsed)
    {
        _queues = queues;
        _signal = signalUsed;
    }

    /// <inheritdoc />
    public void Reset() => _queues = null;

    /// <inheritdoc />
    public void Notify(int queue)
    {
        if (_queues is null || queue != 0)
            return;
        Virtqueue q = _queues[0];
        bool interrupt = false;
        while (q.TryPop(out DescriptorChain? chain))
        {
            uint written = Handle(q, chain!);
            interrupt |= q.AddUsed(chain!.Head, written);
        }
        if (interrupt)
            _signal?.Invoke(0);
    }

    private uint Handle(Virtqueue q, DescriptorChain chain)
    {
        // 5.2.6: struct virtio_blk_req { le32 type; le32 reserved; le64 sector; u8 data[]; u8 status; }
        Span<byte> header = stackalloc byte[16];
        if (q.Gather(chain, 0, header) != 16)
            throw new VirtqueueException("virtio-blk request shorter than its 16-byte header");
        VirtqBuffer statusBuf = chain.Buffers[^1];
        if (!statusBuf.DeviceWritable || statusBuf.Length < 1)
            throw new VirtqueueException("virtio-blk request does not end with a writable status byte");
        uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
        ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
        var data = chain.Buffers.Skip(1).Take(chain.Buffers.Count - 2).ToList();
        // The header may share its descriptor with data in theory; drivers (Linux) use a separate one.
        byte status = StatusOk;
        uint written = 0;
        try
        {
            switch (type)
            {
                case TypeIn:
                case TypeOut:
                {
                    long pos = checked((long)sector * 512);
                    foreach (var b in data)
                    {
                        if (type == TypeIn != b.DeviceWritable)
                            throw new VirtqueueException("virtio-blk data buffer has the wrong direction");
                        // 5.2.6.2: requests beyond the capacity fail with IOERR.
                        if ((ulong)pos + b.Length > SectorCount * 512)
                        {
                            status = StatusIoErr;
                            break;
                        }
                        if (type == TypeOut && ReadOnly)
                        {
                            status = StatusIoErr;
                            break;
                        }
                        Span<byte> span = q.GetSpanFor(b);
                        if (type == TypeIn)
                        {
                            int n = RandomAccess.Read(_file, span, pos);
                            span[n..].Clear();
                            written += b.Length;
                        }
                        else
                        {
                            RandomAccess.Write(_file, span, pos);
                        }
                        pos += b.Length;
                    }
                    break;
                }
                case TypeFlush:
                    RandomAccess.FlushToDisk(_file);
                    break;
                case TypeGetId:
                {
                    byte[] id = new byte[20]; // VIRTIO_BLK_ID_BYTES
                    System.Text.Encoding.ASCII.GetBytes(_id.AsSpan(0, Math.Min(20, _id.Length)), id);
                    if (data.Count > 0 && data[0].DeviceWritable)
                        written += (uint)q.Scatter(chain, 0, id.AsSpan(0, (int)Math.Min(20u, data[0].Length)));
                    break;
                }
                default:
                    status = StatusUnsupp;
                    break;
            }
        }
        catch (IOException)
        {
            status = StatusIoErr;
        }
        q.WriteByte(statusBuf.Address, status);
        return written + 1;
    }

    /// <inheritdoc />
    public void Dispose() => _file.Dispose();
}
