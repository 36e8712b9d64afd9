//! Generated gRPC types and services for package `incident.v1`, and the descriptor set that
//! server reflection serves.

#[allow(clippy::all, clippy::pedantic)]
pub mod incident {
    pub mod v1 {
        tonic::include_proto!("incident.v1");
    }
}

pub use incident::v1;

/// Encoded `FileDescriptorSet` of every file in `proto/incident/v1`, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/incident_descriptor.bin"));
