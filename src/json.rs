//! JSON input read the way a user reads it: a record is a JSON object, never an array.
//!
//! serde's derived `Deserialize` for a struct also accepts a sequence of its field values in
//! order, and serde_json offers an array to it: `["Dune"]` would create a book titled "Dune"
//! and `{"bid": ["item1", "5", "user1"]}` would place a bid (serde-rs/serde#1587). Neither is
//! in the contract, and a body the OpenAPI document declares invalid must change nothing.
//! [`ObjectsOnly`] wraps a deserializer so that every struct, at any depth, is read as a map;
//! request bodies ([`crate::extract::parse_json`]) and seed files both go through it.

use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// A deserializer whose structs accept only JSON objects; everything else is passed through.
pub struct ObjectsOnly<D>(pub D);

/// The visitor of a value below an [`ObjectsOnly`]; wraps whatever it is handed next.
/// `is_struct` replaces serde's "expected struct NewBook" (a Rust type name) in error messages.
struct WrapVisitor<V> {
    inner: V,
    is_struct: bool,
}

impl<V> WrapVisitor<V> {
    fn new(inner: V) -> Self {
        WrapVisitor {
            inner,
            is_struct: false,
        }
    }
}

/// Reads a value through [`ObjectsOnly`], so that nested structs follow the rule too.
struct WrapSeed<S>(S);

struct WrapAccess<A>(A);

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {
        $(
            fn $method<V: Visitor<'de>>(
                self,
                $($arg: $ty,)*
                visitor: V,
            ) -> Result<V::Value, Self::Error> {
                self.0.$method($($arg,)* WrapVisitor::new(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsOnly<D> {
    type Error = D::Error;

    forward! {
        deserialize_any() deserialize_bool() deserialize_i8() deserialize_i16()
        deserialize_i32() deserialize_i64() deserialize_i128() deserialize_u8()
        deserialize_u16() deserialize_u32() deserialize_u64() deserialize_u128()
        deserialize_f32() deserialize_f64() deserialize_char() deserialize_str()
        deserialize_string() deserialize_bytes() deserialize_byte_buf() deserialize_option()
        deserialize_unit() deserialize_seq() deserialize_map() deserialize_identifier()
        deserialize_ignored_any()
        deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str)
        deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
    }

    /// The one change: a struct is asked for as a map, which an array does not satisfy.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.0.deserialize_map(WrapVisitor {
            inner: visitor,
            is_struct: true,
        })
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {
        $(
            fn $method<E: serde::de::Error>(self, value: $ty) -> Result<V::Value, E> {
                self.inner.$method(value)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for WrapVisitor<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.is_struct {
            f.write_str("a JSON object")
        } else {
            self.inner.expecting(f)
        }
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(ObjectsOnly(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(ObjectsOnly(deserializer))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(WrapAccess(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(WrapAccess(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(WrapAccess(data))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for WrapSeed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(ObjectsOnly(deserializer))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for WrapAccess<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(WrapSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for WrapAccess<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(WrapSeed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(WrapSeed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for WrapAccess<A> {
    type Error = A::Error;
    type Variant = WrapAccess<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(WrapSeed(seed))?;
        Ok((value, WrapAccess(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for WrapAccess<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(WrapSeed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, WrapVisitor::new(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, WrapVisitor::new(visitor))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::ObjectsOnly;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Outer {
        inner: Inner,
        list: Vec<Inner>,
        maybe: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        name: String,
    }

    fn read(json: &str) -> Result<Outer, String> {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        Outer::deserialize(ObjectsOnly(&mut deserializer)).map_err(|e| e.to_string())
    }

    #[test]
    fn objects_are_read_at_every_depth() {
        let outer =
            read(r#"{"inner":{"name":"a"},"list":[{"name":"b"}],"maybe":{"name":"c"}}"#).unwrap();
        assert_eq!(outer.list[0].name, "b");
        assert_eq!(outer.maybe.unwrap().name, "c");
    }

    #[test]
    fn arrays_in_place_of_a_struct_are_refused_at_every_depth() {
        for json in [
            r#"[{"name":"a"},[],null]"#,
            r#"{"inner":["a"],"list":[],"maybe":null}"#,
            r#"{"inner":{"name":"a"},"list":[["b"]],"maybe":null}"#,
            r#"{"inner":{"name":"a"},"list":[],"maybe":["c"]}"#,
        ] {
            let error = read(json).unwrap_err();
            assert!(
                error.starts_with("invalid type: sequence, expected a JSON object"),
                "{json}: {error}"
            );
        }
        // Without the wrapper serde takes the array as the fields in order.
        assert!(serde_json::from_str::<Inner>(r#"["a"]"#).is_ok());
    }
}
