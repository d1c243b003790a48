using System.Runtime.InteropServices;

namespace Netcore.Xdp;

/// <summary>A global variable of a loaded object (see <see cref="BpfObject.Global"/>).</summary>
public sealed class BpfGlobal
{
    private readonly MappedArray<byte> _memory;

    internal BpfGlobal(string name, MappedArray<byte> memory, int offset, int size)
    {
        Name = name;
        _memory = memory;
        Offset = offset;
        Size = size;
    }

    /// <summary>Variable name.</summary>
    public string Name { get; }

    /// <summary>Offset inside its section.</summary>
    public int Offset { get; }

    /// <summary>Size in bytes.</summary>
    public int Size { get; }

    /// <summary>The variable's bytes, shared with the programs.</summary>
    public Span<byte> Bytes => _memory.Span.Slice(Offset, Size);

    /// <summary>Reads the value as <typeparamref name="T"/> (its size must match).</summary>
    public T Read<T>() where T : unmanaged => MemoryMarshal.Read<T>(Checked<T>());

    /// <summary>Writes the value (rejected by the kernel mapping for .rodata, which is frozen after load).</summary>
    public void Write<T>(T value) where T : unmanaged => MemoryMarshal.Write(Checked<T>(), in value);

    private Span<byte> Checked<T>() where T : unmanaged
    {
        if (Marshal.SizeOf<T>() != Size)
            throw new ArgumentException($"global '{Name}' is {Size} bytes, {typeof(T).Name} is {Marshal.SizeOf<T>()}");
        return Bytes;
    }
}
