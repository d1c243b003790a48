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

    /// <summary>True for variables in .rodata: the section is frozen after load (set them with <see cref="BpfObjectOptions.Constants"/>).</summary>
    public bool IsReadOnly => _memory.IsReadOnly;

    /// <summary>Writes the value.</summary>
    /// <exception cref="InvalidOperationException">The variable is in frozen .rodata.</exception>
    public void Write<T>(T value) where T : unmanaged
    {
        if (_memory.IsReadOnly)
            throw new InvalidOperationException($"global '{Name}' is in a read-only (frozen) section; set it before load with BpfObjectOptions.Constants");
        MemoryMarshal.Write(Checked<T>(), in value);
    }

    private Span<byte> Checked<T>() where T : unmanaged
    {
        if (Marshal.SizeOf<T>() != Size)
            throw new ArgumentException($"global '{Name}' is {Size} bytes, {typeof(T).Name} is {Marshal.SizeOf<T>()}");
        return Bytes;
    }
}
