//! A small, pure reader of the `.BTF` section of a BPF ELF object: struct
//! sizes, member offsets/sizes and enum values. Used to check that the Rust
//! mirrors in [`crate::abi`] match what clang laid out. No I/O.

use std::collections::HashMap;

/// What went wrong reading an object's BTF.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfReadError {
    #[error("not a little-endian ELF64 object")]
    NotElf,
    #[error("ELF is truncated at {0}")]
    Truncated(&'static str),
    #[error("object has no .BTF section")]
    NoBtf,
    #[error("bad BTF magic {0:#x}")]
    BadMagic(u16),
    #[error("unknown BTF kind {0}")]
    UnknownKind(u32),
}

/// A struct member as BTF describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub offset: usize,
    pub size: usize,
}

/// Structs and enums found in the BTF.
#[derive(Debug, Default)]
pub struct BtfLayouts {
    /// struct name → (size, members)
    pub structs: HashMap<String, (usize, Vec<Member>)>,
    /// enum name → (enumerator → value)
    pub enums: HashMap<String, HashMap<String, u64>>,
}

fn rd_u16(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_le_bytes([s[0], s[1]]))
}
fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn rd_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// Returns the bytes of the `.BTF` section of an ELF64 LE object.
pub fn btf_section(elf: &[u8]) -> Result<&[u8], BtfReadError> {
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(BtfReadError::NotElf);
    }
    let t = BtfReadError::Truncated;
    let shoff = rd_u64(elf, 0x28).ok_or(t("e_shoff"))? as usize;
    let shentsize = rd_u16(elf, 0x3a).ok_or(t("e_shentsize"))? as usize;
    let shnum = rd_u16(elf, 0x3c).ok_or(t("e_shnum"))? as usize;
    let shstrndx = rd_u16(elf, 0x3e).ok_or(t("e_shstrndx"))? as usize;
    let sh = |i: usize| -> Result<(u32, usize, usize), BtfReadError> {
        let base = shoff + i * shentsize;
        let name = rd_u32(elf, base).ok_or(t("sh_name"))?;
        let off = rd_u64(elf, base + 0x18).ok_or(t("sh_offset"))? as usize;
        let size = rd_u64(elf, base + 0x20).ok_or(t("sh_size"))? as usize;
        Ok((name, off, size))
    };
    let (_, stroff, strsize) = sh(shstrndx)?;
    let strtab = elf.get(stroff..stroff + strsize).ok_or(t("shstrtab"))?;
    for i in 0..shnum {
        let (name, off, size) = sh(i)?;
        let n = cstr(strtab, name as usize);
        if n == ".BTF" {
            return elf.get(off..off + size).ok_or(t(".BTF"));
        }
    }
    Err(BtfReadError::NoBtf)
}

fn cstr(b: &[u8], at: usize) -> String {
    let s = b.get(at..).unwrap_or_default();
    let end = s.iter().position(|&c| c == 0).unwrap_or(s.len());
    String::from_utf8_lossy(&s[..end]).into_owned()
}

#[derive(Debug, Clone)]
enum Ty {
    Sized(usize),                 // int, enum, float, struct, union
    Ref(u32),                     // typedef, const, volatile, restrict, type tag
    Array { elem: u32, n: usize },
    Other,
}

/// (struct name, size, members as (name, type id, bit offset)).
type RawStruct = (String, usize, Vec<(String, u32, u32)>);

/// Parses structs and enums out of a raw `.BTF` section.
pub fn parse_btf(btf: &[u8]) -> Result<BtfLayouts, BtfReadError> {
    let t = BtfReadError::Truncated;
    let magic = rd_u16(btf, 0).ok_or(t("btf header"))?;
    if magic != 0xeb9f {
        return Err(BtfReadError::BadMagic(magic));
    }
    let hdr_len = rd_u32(btf, 4).ok_or(t("hdr_len"))? as usize;
    let type_off = rd_u32(btf, 8).ok_or(t("type_off"))? as usize;
    let type_len = rd_u32(btf, 12).ok_or(t("type_len"))? as usize;
    let str_off = rd_u32(btf, 16).ok_or(t("str_off"))? as usize;
    let str_len = rd_u32(btf, 20).ok_or(t("str_len"))? as usize;
    let types = btf.get(hdr_len + type_off..hdr_len + type_off + type_len).ok_or(t("types"))?;
    let strs = btf.get(hdr_len + str_off..hdr_len + str_off + str_len).ok_or(t("strings"))?;

    // Type ids start at 1.
    let mut tys: Vec<Ty> = vec![Ty::Other];
    // (struct name, size, raw members (name, type, bit offset))
    let mut raw_structs: Vec<RawStruct> = Vec::new();
    let mut out = BtfLayouts::default();

    let mut p = 0usize;
    while p < types.len() {
        let name_off = rd_u32(types, p).ok_or(t("type name"))?;
        let info = rd_u32(types, p + 4).ok_or(t("type info"))?;
        let size_or_type = rd_u32(types, p + 8).ok_or(t("type size"))?;
        p += 12;
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let kflag = info >> 31 == 1;
        let name = cstr(strs, name_off as usize);
        match kind {
            1 => {
                tys.push(Ty::Sized(size_or_type as usize));
                p += 4;
            }
            2 | 7 | 12 => tys.push(Ty::Other), // ptr, fwd, func
            3 => {
                let elem = rd_u32(types, p).ok_or(t("array"))?;
                let n = rd_u32(types, p + 8).ok_or(t("array"))? as usize;
                tys.push(Ty::Array { elem, n });
                p += 12;
            }
            4 | 5 => {
                let mut members = Vec::with_capacity(vlen);
                for i in 0..vlen {
                    let b = p + i * 12;
                    let mname = cstr(strs, rd_u32(types, b).ok_or(t("member"))? as usize);
                    let mty = rd_u32(types, b + 4).ok_or(t("member"))?;
                    let moff = rd_u32(types, b + 8).ok_or(t("member"))?;
                    let bit_off = if kflag { moff & 0x00ff_ffff } else { moff };
                    members.push((mname, mty, bit_off));
                }
                p += vlen * 12;
                tys.push(Ty::Sized(size_or_type as usize));
                if kind == 4 && !name.is_empty() {
                    raw_structs.push((name, size_or_type as usize, members));
                }
            }
            6 => {
                let mut vals = HashMap::new();
                for i in 0..vlen {
                    let b = p + i * 8;
                    let vname = cstr(strs, rd_u32(types, b).ok_or(t("enum"))? as usize);
                    let v = rd_u32(types, b + 4).ok_or(t("enum"))?;
                    vals.insert(vname, u64::from(v));
                }
                p += vlen * 8;
                tys.push(Ty::Sized(size_or_type as usize));
                if !name.is_empty() {
                    out.enums.insert(name, vals);
                }
            }
            8..=11 | 18 => tys.push(Ty::Ref(size_or_type)),
            13 => {
                p += vlen * 8;
                tys.push(Ty::Other);
            }
            14 => {
                p += 4;
                tys.push(Ty::Other);
            }
            15 => {
                p += vlen * 12;
                tys.push(Ty::Other);
            }
            16 => tys.push(Ty::Sized(size_or_type as usize)),
            17 => {
                p += 4;
                tys.push(Ty::Other);
            }
            19 => {
                let mut vals = HashMap::new();
                for i in 0..vlen {
                    let b = p + i * 12;
                    let vname = cstr(strs, rd_u32(types, b).ok_or(t("enum64"))? as usize);
                    let lo = rd_u32(types, b + 4).ok_or(t("enum64"))?;
                    let hi = rd_u32(types, b + 8).ok_or(t("enum64"))?;
                    vals.insert(vname, (u64::from(hi) << 32) | u64::from(lo));
                }
                p += vlen * 12;
                tys.push(Ty::Sized(size_or_type as usize));
                if !name.is_empty() {
                    out.enums.insert(name, vals);
                }
            }
            k => return Err(BtfReadError::UnknownKind(k)),
        }
    }

    fn size_of(tys: &[Ty], id: u32, depth: u32) -> usize {
        if depth > 32 {
            return 0;
        }
        match tys.get(id as usize) {
            Some(Ty::Sized(s)) => *s,
            Some(Ty::Ref(r)) => size_of(tys, *r, depth + 1),
            Some(Ty::Array { elem, n }) => n * size_of(tys, *elem, depth + 1),
            _ => 0,
        }
    }
    for (name, size, members) in raw_structs {
        let ms = members
            .into_iter()
            .map(|(n, ty, bit_off)| Member {
                name: n,
                offset: (bit_off / 8) as usize,
                size: size_of(&tys, ty, 0),
            })
            .collect();
        out.structs.insert(name, (size, ms));
    }
    Ok(out)
}

/// Parses an ELF object's BTF.
pub fn layouts_from_object(elf: &[u8]) -> Result<BtfLayouts, BtfReadError> {
    parse_btf(btf_section(elf)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi;

    #[test]
    fn abi_matches_btf() {
        let btf = layouts_from_object(crate::BPF_OBJECT).expect("object BTF parses");
        for l in abi::all_layouts() {
            let (size, members) = btf
                .structs
                .get(l.c_name)
                .unwrap_or_else(|| panic!("struct {} missing from BTF", l.c_name));
            assert_eq!(*size, l.size, "size of struct {}", l.c_name);
            let rust: Vec<Member> = l
                .fields
                .iter()
                .map(|(n, off, sz)| Member {
                    name: n.trim_start_matches("r#").to_string(),
                    offset: *off,
                    size: *sz,
                })
                .collect();
            assert_eq!(&rust, members, "fields of struct {}", l.c_name);
            let sum: usize = members.iter().map(|m| m.size).sum();
            assert_eq!(sum, *size, "struct {} has implicit padding", l.c_name);
        }
        for (en, var, val) in abi::enum_values() {
            let e = btf.enums.get(en).unwrap_or_else(|| panic!("enum {en} missing from BTF"));
            assert_eq!(e.get(var), Some(&val), "{en}::{var}");
        }
        // And the other way round: every reason the C side defines is known to Rust.
        for (var, val) in &btf.enums["porin_reason"] {
            if var == "PORIN_R_MAX" || var == "PORIN_R_DROP_FIRST" {
                continue;
            }
            let r = abi::Reason::from_u8(*val as u8)
                .unwrap_or_else(|| panic!("C reason {var}={val} has no Rust variant"));
            assert_eq!(r.c_name(), var, "reason value {val}");
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(layouts_from_object(b"nope").unwrap_err(), BtfReadError::NotElf);
        assert!(parse_btf(&[0u8; 24]).is_err());
    }
}
