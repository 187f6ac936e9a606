pub mod offline;

pub mod agent;
pub mod apply;
pub mod audit;
pub mod demo;
pub mod delete;
pub mod get;
pub mod label;
pub mod lab;
pub mod observe;
pub mod status;
pub mod token;
pub mod version;
pub mod test;
pub mod promote;
pub mod install_cni;
