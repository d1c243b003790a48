using System.Buffers.Binary;

namespace Netcore.TestSupport;

/// <summary>The Internet checksum (RFC 1071) that test packet builders and checks compute.</summary>
public static class InternetChecksum
{
    /// <summary>The one's complement of the one's complement sum of the 16-bit big-endian words (an odd last byte padded with zero); 0 over data that includes a correct checksum.</summary>
    public static ushort Compute(ReadOnlySpan<byte> data)
    {
        uint sum = 0;
        for (int i = 0; i + 1 < data.Length; i += 2)
            sum += BinaryPrimitives.ReadUInt16BigEndian(data[i..]);
        if ((data.Length & 1) != 0)
            sum += (uint)data[^1] << 8;
        while (sum > 0xffff)
            sum = (sum & 0xffff) + (sum >> 16);
        return (ushort)~sum;
    }
}
